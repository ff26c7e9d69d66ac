"""`refdomains init`: a project folder ready to run, what `dlt init` gives a dlt user (README: Install).

It writes .dlt/config.toml with every key of [sources.serpstat], .dlt/secrets.toml with the secret
ones, a .gitignore and, on request, a schedule. The [sources.serpstat] sections are generated from
`SerpstatConfiguration`'s fields, defaults and docstrings, so they cannot drift from the code that
reads them. An existing file is never overwritten: a .gitignore or .dlt/*.toml that lacks this
project's part gets it appended (as `dlt init` adds a source's section to a project's files), and
anything else that exists is kept as it is. Every outcome is one line naming the file.
"""

from __future__ import annotations

import ast
import inspect
import json
import shlex
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import tomlkit
from dlt.common.configuration.specs.base_configuration import is_secret_hint

from . import __version__
from .config import SerpstatConfiguration
from .constants import SOURCE_SECTION
from .errors import UsageError

DISTRIBUTION = "serpstat-refdomains"
# The settings a run cannot do without: written uncommented and empty, so that a run before they
# are filled in stops with its one line ("no domains to track", "token is missing") instead of
# spending credits on an example domain or sending a placeholder as the token.
REQUIRED = ("domains", "api_token")
# A value to show for each setting whose default is "not set" (the test requires one for each).
EXAMPLES: dict[str, Any] = {
    "domains": ["example.com", {"query": "mysite.com", "search_type": "domain", "competitors": ["rival.com"]}],
    "complex_filter": [[{"field": "domain_rank", "compareType": "gte", "value": [10]}]],
    "max_credits_per_run": 50000,
    "alert_webhook_url": "https://hooks.example.com/...",
}
SECTION = ".".join(SOURCE_SECTION)
CONFIG_HEADER = f"""\
# serpstat-refdomains {__version__}: every setting, written by `refdomains init`.
# A commented key shows its default (an example, where it is unset by default): uncomment it to
# change it. Any key can also be set as an environment variable SOURCES__SERPSTAT__<KEY>, which
# wins over this file.
# Secrets (the API token, the alert webhook) go in .dlt/secrets.toml, never here.
"""
SECRETS_HEADER = """\
# serpstat-refdomains secrets, written by `refdomains init`. Keep this file out of git (.gitignore);
# on a scheduler set the same keys as environment variables instead, e.g. SOURCES__SERPSTAT__API_TOKEN.
"""
# --schedule: where the file goes in the project, its template, and what to do next
SCHEDULES: dict[str, tuple[str, str, str] | None] = {
    "github-actions": (".github/workflows/refdomains.yml", "github-actions.yml",
                       "add the repository secrets SERPSTAT_API_TOKEN and WAREHOUSE_POSTGRES_URL, then commit "
                       ".dlt/config.toml, .gitignore and .github/workflows/refdomains.yml"),
    "airflow": ("dags/refdomains.py", "airflow_dag.py",
                "install serpstat-refdomains into Airflow's environment and keep dags/ beside .dlt/ (or set "
                "DLT_PROJECT_DIR); the DAG's docstring lists the variables it reads"),
    "cron": ("refdomains.cron", "refdomains.cron",
             "install it with: (crontab -l 2>/dev/null; cat refdomains.cron) | crontab -"),
    "none": None,
}
# what the GitHub Actions template installs when this installation does not say where it came from
PLACEHOLDER_REQUIREMENT = f"{DISTRIBUTION} @ git+https://github.com/<org>/{DISTRIBUTION}@v<version>"


@dataclass(frozen=True)
class Field:
    name: str
    default: Any
    doc: str
    secret: bool


def fields() -> list[Field]:
    """Every setting of [sources.serpstat], in declaration order."""
    docs = _field_docs(SerpstatConfiguration)
    defaults = SerpstatConfiguration()
    return [Field(name, getattr(defaults, name), docs.get(name, ""), is_secret_hint(hint))
            for name, hint in SerpstatConfiguration.get_resolvable_fields().items()]


def _field_docs(spec: type) -> dict[str, str]:
    """The docstring under each field of `spec` (Python keeps none at run time: read from source)."""
    body = ast.parse(textwrap.dedent(inspect.getsource(spec))).body[0]
    assert isinstance(body, ast.ClassDef)
    docs = {}
    for node, after in zip(body.body, body.body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _toml(value: Any) -> str:
    return tomlkit.item(value).as_string()


def section(secret: bool) -> str:
    """[sources.serpstat] of config.toml (secret=False: every key, the secret ones only named) or
    of secrets.toml (secret=True: the secret keys): each key under its docstring, commented with
    its default (or an example) unless REQUIRED."""
    lines = [f"[{SECTION}]"]
    for field in fields():
        if secret and not field.secret:
            continue
        lines += ["", *textwrap.wrap(field.doc, 98, initial_indent="# ", subsequent_indent="# ")]
        if field.secret and not secret:  # named here too, so this file lists every key
            lines.append(f"# {field.name}: a secret, set in .dlt/secrets.toml")
        elif field.name in REQUIRED:
            if field.name in EXAMPLES:
                lines.append(f"# e.g. {field.name} = {_toml(EXAMPLES[field.name])}")
            lines.append(f"{field.name} = {_toml('' if secret else [])}  # required")
        else:
            shown = field.default if field.default is not None else EXAMPLES[field.name]
            lines.append(f"# {field.name} = {_toml(shown)}")
    return "\n".join(lines) + "\n"


def _template(name: str) -> str:
    return resources.files("serpstat_refdomains.templates").joinpath(name).read_text(encoding="utf-8")


def requirement() -> str:
    """What to `pip install` for this very release: the git URL and revision it was installed
    from when pip recorded one (PEP 610), else the release tag of an <org> to fill in."""
    try:
        recorded = json.loads(metadata.distribution(DISTRIBUTION).read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        recorded = {}
    vcs = recorded.get("vcs_info") or {}
    revision = vcs.get("requested_revision") or vcs.get("commit_id")
    if vcs.get("vcs") != "git" or not revision:
        return PLACEHOLDER_REQUIREMENT.replace("<version>", __version__)
    url = urlsplit(recorded["url"])
    host = url.netloc.rpartition("@")[2]  # a token in the URL must not land in a committed file
    return f"{DISTRIBUTION} @ git+{urlunsplit(url._replace(netloc=host))}@{revision}"


def _refdomains_command() -> str:
    """The `refdomains` of the environment running now (a venv, pipx, uv tool), for cron's PATH-less shell."""
    script = Path(sys.executable).parent / "refdomains"
    return str(script) if script.exists() else "refdomains"


def _cron_quote(path: str) -> str:
    """A path in a crontab command: quoted for the shell, and `%`, which cron reads as a newline, escaped."""
    return shlex.quote(path).replace("%", "\\%")


def _files(schedule: str, folder: Path) -> list[tuple[str, str]]:
    """(path in the project, content) of every file init writes."""
    files = [(".dlt/config.toml", CONFIG_HEADER + "\n" + section(secret=False)),
             (".dlt/secrets.toml", SECRETS_HEADER + "\n" + section(secret=True) + _template("secrets.toml.template")),
             (".gitignore", _template("gitignore"))]
    chosen = SCHEDULES[schedule]
    if chosen is not None:
        path, template, _ = chosen
        text = (_template(template).replace(PLACEHOLDER_REQUIREMENT, requirement())
                .replace("<project>", _cron_quote(str(folder)))
                .replace("<refdomains>", _cron_quote(_refdomains_command())))
        files.append((path, text))
    return files


def init(folder: str | Path, schedule: str = "none") -> list[str]:
    """Write the project into `folder` (created if missing); returns one line per file and what to
    do next. UsageError (one line) when the folder cannot be written."""
    if schedule not in SCHEDULES:
        raise UsageError(f"--schedule {schedule!r} is unknown: use one of {', '.join(SCHEDULES)}")
    root = Path(folder).absolute()
    try:
        if root.exists() and not root.is_dir():
            raise UsageError(f"{root} is a file, not a folder: choose a project folder with --dir")
        lines = [_write(root, path, text) for path, text in _files(schedule, root)]
    except OSError as error:
        raise UsageError(f"cannot write the project in {root} ({error.strerror or error}): choose a folder you "
                         "can write to with --dir") from None
    lines.append("next: put your domains in .dlt/config.toml and your API token in .dlt/secrets.toml (or "
                 "SOURCES__SERPSTAT__API_TOKEN), then run `refdomains run`; `refdomains demo` tries it offline")
    chosen = SCHEDULES[schedule]
    if chosen is not None:
        lines.append(f"schedule ({schedule}): {chosen[2]}")
        if "<org>" in (root / chosen[0]).read_text(encoding="utf-8"):
            lines.append(f"schedule ({schedule}): <org> in {chosen[0]}'s install line stands for the GitHub owner of "
                         f"{DISTRIBUTION}: fill it in (the tag, v{__version__}, is this release)")
    return lines


def _write(root: Path, relative: str, text: str) -> str:
    """Create the file, or add this project's part to one that lacks it; else keep it. One line."""
    path = root / relative
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return f"created {relative}"
    existing = path.read_text(encoding="utf-8")
    if relative == ".gitignore":
        have = {line.strip() for line in existing.splitlines()}
        missing = [line for line in text.splitlines() if line and not line.startswith("#") and line not in have]
        if not missing:
            return f"kept {relative} (it already ignores what this project must not commit)"
        _append(path, existing, "\n".join([text.splitlines()[0], *missing]) + "\n")
        return f"added {', '.join(missing)} to {relative}"
    if relative.endswith(".toml"):
        try:
            present = _has_section(tomllib.loads(existing))
        except tomllib.TOMLDecodeError as error:
            return f"kept {relative} (it is not valid TOML: {error}; fix it before `refdomains run`)"
        if present:
            return f"kept {relative} (it already has [{SECTION}])"
        _append(path, existing, text)
        return f"added [{SECTION}] to {relative} (nothing else in it changed)"
    return f"kept {relative} (it exists; delete it to have it written again)"


def _has_section(document: dict) -> bool:
    for key in SOURCE_SECTION:
        if not isinstance(document, dict) or key not in document:
            return False
        document = document[key]
    return True


def _append(path: Path, existing: str, text: str) -> None:
    separator = "" if not existing or existing.endswith("\n\n") else ("\n" if existing.endswith("\n") else "\n\n")
    with path.open("a", encoding="utf-8") as handle:
        handle.write(separator + text)
