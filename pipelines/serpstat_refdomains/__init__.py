"""serpstat-refdomains: dated snapshots of Serpstat referring domains, loaded with dlt.

`from serpstat_refdomains import serpstat` gives the dlt source, as dlt's verified sources do;
`run_configured()` does what `refdomains run` does, for a scheduler's task.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

__all__ = ["__version__", "run_configured", "serpstat"]

if TYPE_CHECKING:
    from .pipeline import run_configured
    from .source import serpstat


# the module each public name comes from
_LAZY = {"serpstat": ".source", "run_configured": ".pipeline"}


def __getattr__(name: str) -> Any:
    # Imported on first use: the CLI and the emulator import this package too, and the source
    # would load dlt's extract machinery and pyarrow for every command (PEP 562).
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
