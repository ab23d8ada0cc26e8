"""`%load_ext llmos`: registers the %llmos / %%llmos magics. Imports nothing heavy."""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ip: Any) -> None:
    """Register the magics on an IPython shell (cheap: torch loads on first real use)."""
    from llmos_jupyter.magics.llmos_magic import LLMOSMagics

    ip.register_magics(LLMOSMagics(ip))


def unload_ipython_extension(ip: Any) -> None:
    """Nothing to undo beyond IPython's own bookkeeping; kept for symmetry."""
