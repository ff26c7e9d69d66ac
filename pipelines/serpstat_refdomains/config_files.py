"""The configuration as written, checked before dlt resolves it (docs/configuration.md#checks).

dlt reads a setting of `[sources.serpstat]` from .dlt/config.toml and .dlt/secrets.toml (in the
project folder, then in dlt's global folder) under `[sources.serpstat]`, `[sources]` or at the top
level, and from SOURCES__SERPSTAT__<KEY>, SOURCES__<KEY> or <KEY>; it ignores every other name, and
takes an empty variable as a value. So `max_credit_per_run`, `[sources.serpstats]`,
`SOURCE__SERPSTAT__MAX_CREDITS_PER_RUN` or `SOURCES__SERPSTAT__MAX_CREDITS_PER_RUN=` each ran with
no budget. Here a name close to one of ours that dlt would not read, an empty variable of ours and
a file that is not valid TOML are each refused in one line naming it and the fix. Names far from
ours (other sources, other tools) are left alone.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Collection, Iterator
from typing import Any

import dlt
from dlt.common.configuration.specs import RuntimeConfiguration

from .constants import PIPELINE_NAME
from .errors import ConfigError

ENV_PREFIX = "SOURCES__SERPSTAT__"
FILES = ("config.toml", "secrets.toml")
SLACK_HOOK = "slack_incoming_hook"
# dlt's own [runtime] settings (RUNTIME__*): read by dlt, never refused here
RUNTIME_KEYS = frozenset(RuntimeConfiguration.get_resolvable_fields())
# how close a name must be to one of ours to be taken for a misspelling of it
CLOSE = 0.8


def configuration_files() -> list[str]:
    """The TOML files dlt reads the configuration from, as they exist: the project's, then the
    global ones."""
    context = dlt.current.run_context()
    folders = [context.settings_dir, context.global_dir]
    return [path for folder in dict.fromkeys(f for f in folders if f)
            for path in (os.path.join(folder, name) for name in FILES) if os.path.isfile(path)]


def check_written_configuration(known: Collection[str]) -> None:
    """ConfigError, one line naming the file (and line) or variable and the fix, for a TOML file
    that does not parse, a key or section close to ours that dlt would not read, or an environment
    variable of ours that is empty or misspelt."""
    for path in configuration_files():
        problem = unreadable_file([path])
        if problem is not None:
            raise problem
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
        for message in _file_problems(document, known, _shown(path)):
            raise ConfigError(message)
    for name, value in sorted(os.environ.items()):
        wrong = _variable_problem(name, value, known)
        if wrong is not None:
            raise ConfigError(wrong)


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


# --- files ---------------------------------------------------------------------------------------
def _file_problems(document: dict[str, Any], known: Collection[str], path: str) -> Iterator[str]:
    sources = document.get("sources")
    for key, value in document.items():
        if isinstance(value, dict):
            if key == "runtime":
                yield from _runtime_key_problems(value, path)
            elif key not in ("sources", PIPELINE_NAME) and (
                    "serpstat" in key.lower() or (_close(key, ["sources"]) and _mentions_ours(value, known))):
                yield (f"unknown section [{_table(key, value)}] in {path}: dlt does not read it; "
                       f"did you mean [sources.serpstat]? {REFUSED}")
        elif key not in known and _close(key, known):
            yield (f"unknown top-level setting {key!r} in {path}: did you mean {_closest(key, known)!r} "
                   f"(or put it under [sources.serpstat])? {REFUSED}")
    if not isinstance(sources, dict):
        return
    for key, value in sources.items():
        if isinstance(value, dict):
            if key == "serpstat":
                for name in value:
                    if name not in known:
                        yield (f"unknown setting {name!r} under [sources.serpstat] in {path}: "
                               f"{_suggestion(name, known, repr)} {REFUSED}")
            elif "serpstat" in key.lower() or _close(key, ["serpstat"]):
                yield (f"unknown section [sources.{key}] in {path}: dlt does not read it; "
                       f"did you mean [sources.serpstat]? {REFUSED}")
        elif key not in known and _close(key, known):
            yield (f"unknown setting {key!r} under [sources] in {path}: did you mean "
                   f"{_closest(key, known)!r}? {REFUSED}")


def _runtime_key_problems(section: dict[str, Any], path: str) -> Iterator[str]:
    for key in section:
        if _misspelt_hook(key):
            yield (f"unknown setting {key!r} under [runtime] in {path}: did you mean {SLACK_HOOK!r}? "
                   "(dlt ignores it, so Slack alerts would go nowhere)")


def _mentions_ours(table: dict[str, Any], known: Collection[str]) -> bool:
    """Whether a table holds a key of ours (or close to one) or a serpstat-like table."""
    return any(("serpstat" in key.lower() or _close(key, ["serpstat"])) if isinstance(value, dict)
               else (key in known or _close(key, known)) for key, value in table.items())


def _table(key: str, value: dict[str, Any]) -> str:
    """The table's name as written, with the serpstat-like table inside it if there is one."""
    inner = [name for name, item in value.items() if isinstance(item, dict) and _close(name, ["serpstat"], 0.6)]
    return f"{key}.{inner[0]}" if inner else key


# --- the environment -----------------------------------------------------------------------------
def _variable_problem(name: str, value: str, known: Collection[str]) -> str | None:
    upper = name.upper()
    if upper.startswith(PIPELINE_NAME.upper() + "__") and "SERPSTAT" not in upper[len(PIPELINE_NAME) + 2:]:
        return None  # dlt's pipeline-scoped settings (destination credentials and the like)
    keys = {key.upper(): key for key in known}
    read = {f"{prefix}{key}" for key in keys for prefix in (ENV_PREFIX, "SOURCES__", "")}
    if upper in read or upper == f"RUNTIME__{SLACK_HOOK.upper()}":
        if name != upper:
            return f"environment variable {name} is not read (dlt reads upper-case names only): rename it {upper}"
        if not value.strip():
            return (f"environment variable {name} is set but empty, which dlt takes as its value (and would "
                    f"override the files): unset it, or give it a value")
        return None
    if upper.startswith("RUNTIME__"):
        if _misspelt_hook(upper[len("RUNTIME__"):].lower()):
            return (f"unknown environment variable {name}: did you mean RUNTIME__{SLACK_HOOK.upper()}? "
                    "(dlt ignores it, so Slack alerts would go nowhere)")
        return None
    if "SERPSTAT" in upper:  # meant for us, whatever the spelling
        tail = upper.split("SERPSTAT", 1)[1]
        tail = tail.rsplit("__", 1)[1] if "__" in tail else tail.lstrip("_S")
        return f"unknown environment variable {name}: {_env_suggestion(tail, known, ENV_PREFIX)} {REFUSED}"
    prefix, separator, key = upper.rpartition("__")
    if not separator:  # no dlt section: SOURCES_MAX_CREDITS_PER_RUN, or a bare key
        ending = [k for k in keys if upper.endswith("_" + k)]
        prefix, key = (upper[:-len(ending[0]) - 1], ending[0]) if ending else ("", upper)
    section = prefix.replace("_", "").lower()
    if not section:  # a bare name: only one that is plainly a misspelling of ours
        if "_" in key and _close(key.lower(), known, 0.9):
            return f"unknown environment variable {name}: {_env_suggestion(key, known, '')} {REFUSED}"
        return None
    if _close(section, ["sources"]) and (key in keys or _close(key.lower(), known)):
        fix = "SOURCES__" if section == "sources" and separator else ENV_PREFIX
        return f"unknown environment variable {name}: {_env_suggestion(key, known, fix)} {REFUSED}"
    return None


def _misspelt_hook(key: str) -> bool:
    """A [runtime] key that is meant to be slack_incoming_hook but is not dlt's spelling of it."""
    key = key.lower()
    return key != SLACK_HOOK and key not in RUNTIME_KEYS and (
        "slack" in key or "hook" in key or _close(key, [SLACK_HOOK], 0.6))


def _env_suggestion(key: str, known: Collection[str], prefix: str) -> str:
    return _suggestion(key.lower(), known, lambda match: prefix + match.upper())


# --- names ---------------------------------------------------------------------------------------
def _close(name: str, names: Collection[str], cutoff: float = CLOSE) -> bool:
    return bool(difflib.get_close_matches(name.lower(), names, n=1, cutoff=cutoff))


def _closest(name: str, names: Collection[str]) -> str:
    return difflib.get_close_matches(name.lower(), names, n=1, cutoff=0.0)[0]


def _suggestion(key: str, known: Collection[str], shown: Callable[[str], str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"did you mean {shown(match[0])}?" if match else f"the settings are {', '.join(sorted(known))}"


def _shown(path: str) -> str:
    """The path as the user knows it: relative to the working directory when inside it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
