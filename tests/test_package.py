"""The package's face: the dlt source re-exported like dlt's verified sources, the version written once."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys


def test_the_source_is_importable_from_the_package():
    import serpstat_refdomains
    from serpstat_refdomains import serpstat
    from serpstat_refdomains.source import serpstat as defined

    assert serpstat is defined and "serpstat" in serpstat_refdomains.__all__
    assert serpstat.name == "serpstat"


def test_importing_the_package_does_not_load_the_source():
    """The emulator and every command import the package; only a user of the source pays for it."""
    code = ("import sys, serpstat_refdomains.emulator; "
            "print('serpstat_refdomains.source' in sys.modules, 'pyarrow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_the_installed_version_is_the_package_version():
    import serpstat_refdomains

    assert importlib.metadata.version("serpstat-refdomains") == serpstat_refdomains.__version__
