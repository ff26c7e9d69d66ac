"""The configuration as written, checked before dlt resolves it (docs/configuration.md).

dlt reads `[sources.serpstat]` from .dlt/config.toml and .dlt/secrets.toml (in the project folder,
then in dlt's global folder) and from SOURCES__SERPSTAT__* variables, and ignores what it does not
look for: a key spelled `max_credit_per_run` silently ran with no budget. Here every key written
there must be one the pipeline reads, and a file that is not valid TOML is named with its line.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Collection

import dlt

from .errors import ConfigError

ENV_PREFIX = "SOURCES__SERPSTAT__"
FILES = ("config.toml", "secrets.toml")


def configuration_files() -> list[str]:
    """The TOML files dlt reads the configuration from, as they exist: the project's, then the
    global ones."""
    context = dlt.current.run_context()
    folders = [context.settings_dir, context.global_dir]
    return [path for folder in dict.fromkeys(f for f in folders if f)
            for path in (os.path.join(folder, name) for name in FILES) if os.path.isfile(path)]


def check_written_configuration(known: Collection[str]) -> None:
    """ConfigError, one line naming the file (and line) or variable and the fix, for a TOML file
    that does not parse or a key under [sources.serpstat] that the pipeline does not read."""
    for path in configuration_files():
        problem = unreadable_file([path])
        if problem is not None:
            raise problem
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
        section = document.get("sources", {}).get("serpstat", {})
        for key in section if isinstance(section, dict) else ():
            if key not in known:
                raise ConfigError(f"unknown setting {key!r} under [sources.serpstat] in {_shown(path)}: "
                                  f"{_suggestion(key, known, repr)} {REFUSED}")
    for name in os.environ:
        if name.upper().startswith(ENV_PREFIX) and name[len(ENV_PREFIX):].lower() not in known:
            key = name[len(ENV_PREFIX):].lower()
            raise ConfigError(f"unknown environment variable {name}: "
                              f"{_suggestion(key, known, lambda match: ENV_PREFIX + match.upper())} {REFUSED}")


def unreadable_file(paths: Collection[str]) -> ConfigError | None:
    """The error naming the file, line and column of the first of `paths` that is not valid TOML
    (dlt's own message names every path it tried, not the fault); None if all parse."""
    for path in paths:
        try:
            with open(path, "rb") as handle:
                tomllib.load(handle)
        except OSError:
            continue  # a path dlt tried that does not exist
        except tomllib.TOMLDecodeError as error:
            return ConfigError(f"{_shown(path)} is not valid TOML ({error}): fix that line")
    return None


REFUSED = "(a setting the pipeline does not read is refused, so a misspelt one never runs without its value)"


def _suggestion(key: str, known: Collection[str], shown: Callable[[str], str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"did you mean {shown(match[0])}?" if match else f"the settings are {', '.join(sorted(known))}"


def _shown(path: str) -> str:
    """The path as the user knows it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
