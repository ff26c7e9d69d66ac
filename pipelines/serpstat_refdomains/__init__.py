"""serpstat-refdomains: dated snapshots of Serpstat referring domains, loaded with dlt.

`from serpstat_refdomains import serpstat` gives the dlt source, as dlt's verified sources do;
`serpstat_refdomains.dataset()` opens what `refdomains run` loaded for this project folder;
`run_configured()` does what `refdomains run` does, for a scheduler's task.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The one place the version is written: pyproject.toml reads it from here.
__version__ = "0.2.0"

__all__ = ["__version__", "dataset", "run_configured", "serpstat"]

if TYPE_CHECKING:
    from .pipeline import run_configured
    from .source import serpstat


def dataset(destination: Any = None, dataset_name: str | None = None) -> Any:
    """The loaded tables and the models as a dlt dataset: exactly what `refdomains run` writes for
    the configuration of the project folder (the working directory, or DLT_PROJECT_DIR), whatever
    ran elsewhere on the machine. `destination` and `dataset_name` as `refdomains run` takes them
    (`--destination`, `--dataset-name`); DuckDB's file is the project's unless configured.

        import serpstat_refdomains
        lost = serpstat_refdomains.dataset()["lost_ref_domains"].df()
    """
    from .warehouse import open_dataset

    return open_dataset(destination, dataset_name)


# the module each public name comes from
_LAZY = {"serpstat": ".source", "run_configured": ".pipeline"}


def __getattr__(name: str) -> Any:
    # Imported on first use: the CLI and the emulator import this package too, and the source
    # would load dlt's extract machinery and pyarrow for every command (PEP 562).
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
