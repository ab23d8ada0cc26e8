"""LLMOS for Jupyter: the implementation package. The public face is `llmos`.

Its floors, top to bottom, are drawn in docs/architecture.md; this module is only the
Jupyter server extension's entry point.
"""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Jupyter finds the LLMOS server extension here (see server/extension.py)."""
    return [{"module": "llmos_jupyter"}]


def _load_jupyter_server_extension(serverapp) -> None:  # noqa: ANN001 - Jupyter's ServerApp
    """Called by Jupyter at start-up: mount the LLMOS routes under {base_url}llmos/."""
    # torch, tornado: imported on first use, not with this module
    from llmos_jupyter.server.extension import load

    load(serverapp)
