"""serpstat-refdomains: dated snapshots of Serpstat referring domains, loaded with dlt.

`from serpstat_refdomains import serpstat` gives the dlt source, as dlt's verified sources do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.1.0"

__all__ = ["__version__", "serpstat"]

if TYPE_CHECKING:
    from .source import serpstat


def __getattr__(name: str) -> Any:
    # Imported on first use: the CLI and the emulator import this package too, and the source
    # would load dlt's extract machinery and pyarrow for every command (PEP 562).
    if name == "serpstat":
        from .source import serpstat

        return serpstat
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
