"""LLMOS for Jupyter: the implementation package. The public face is `llmos`."""

__version__ = "0.1.0"
