"""API rows to Arrow tables of the `ref_domains` contract (docs/data.md): the pipeline's hot path.

A batch of pages (paging.CONVERT_BATCH_ROWS) is converted column by column: Arrow kernels
lowercase, trim and validate the names, and the registrable domains come from answers shared by
tail (normalize.registrable_domains); about a seventh of the cost of doing it row by row in
Python. Only what the columnar path cannot vouch for takes the row path: a name that is not
plain lowercase-able ASCII (Unicode, punycode, or invalid: `normalize_domain` decides and gives
the reason), and a whole batch whose shape is unusual (numbers as strings or floats, unknown
fields, rows that are not objects). Both paths give identical rows; tests hold them to that.

A donor with a usable name is always kept: a name is the donor, its metrics only describe it,
and a donor dropped for a bad metric would show up as LOST. A metric (`ref_pages`, `domainRank`)
is usable when it is a whole number from 0 to 2**63-1, sent as a JSON integer, a float with no
fraction (47.0) or a string of ASCII digits, blanks around it allowed (" 47 "). Anything else
(-1, 1.5, "n/a", "", "1e3", true, 10**30, a list or object) loads as NULL and is reported to
`nulled(metric, value)`; null or an absent field is NULL without a report. Only a row without
a usable name (or that is not an object) is rejected.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .contract import REF_DOMAINS
from .errors import InvalidDomain
from .normalize import _ASCII_DOMAIN, MAX_DOMAIN_LENGTH, normalize_domain, registrable_domains

INT64_MAX = 2**63 - 1
KNOWN_FIELDS = frozenset({"domain_from", "ref_pages", "domainRank"})

REF_DOMAINS_SCHEMA = REF_DOMAINS.arrow_schema
_RESERVED = set(REF_DOMAINS_SCHEMA.names) | {"_dlt_id", "_dlt_load_id"}
# normalize.py's fast-path rule for a whole name, anchored for Arrow's RE2.
_ASCII_DOMAIN_RE2 = f"^{_ASCII_DOMAIN.pattern}$"
_DIGITS = re.compile(r"[0-9]+")


class SnapshotRows:
    """Converts the pages of one snapshot, keeping one row per normalized donor across pages.

    `constants` are the snapshot's own columns (key, target, search type, date, kind, pulled_at);
    `reject(reason)` is told about every row that cannot be loaded, `nulled(metric, value)`
    about every unusable metric of a loaded row (value as shown to users, e.g. "'n/a'"). Not
    thread-safe: one snapshot's pages are converted by one thread.
    """

    def __init__(self, constants: dict[str, Any], reject: Callable[[str], None],
                 nulled: Callable[[str, str], None] | None = None) -> None:
        self.constants = constants
        self.reject = reject
        self.nulled = nulled or (lambda metric, value: None)
        self.seen: set[str] = set()

    def table(self, rows: list[Any]) -> pa.Table:
        columns = _columns(rows)
        return self._columnar(*columns) if columns is not None else self._row_by_row(rows)

    def finish(self) -> None:
        self.seen = set()  # done deduplicating: dlt may keep this object in its trace

    # --- the columnar path -----------------------------------------------------------------
    def _columnar(self, raw: pa.Array, ref_pages: pa.Array, ranks: pa.Array) -> pa.Table:
        trimmed = pc.utf8_rtrim(pc.utf8_trim_whitespace(raw), characters=".")
        lowered = pc.ascii_lower(trimmed)
        plain = pc.and_(
            pc.and_(pc.string_is_ascii(raw), pc.match_substring_regex(lowered, _ASCII_DOMAIN_RE2)),
            pc.and_(pc.invert(pc.match_substring(lowered, "xn--")),
                    pc.less_equal(pc.utf8_length(lowered), MAX_DOMAIN_LENGTH)))
        plain = pc.fill_null(plain, False)
        names, keep = lowered, None
        if not pc.all(plain).as_py():
            # The rest (Unicode, punycode, invalid) by the rules and reasons of normalize_domain.
            others = pc.invert(plain)
            slow, valid = [], []
            for value in pc.filter(raw, others).to_pylist():
                try:
                    slow.append(normalize_domain(value))
                    valid.append(True)
                except InvalidDomain as error:
                    self.reject(error.reason)
                    slow.append("")
                    valid.append(False)
            names = pc.replace_with_mask(lowered, others, pa.array(slow, pa.string()))
            if not all(valid):
                keep = pc.replace_with_mask(plain, others, pa.array(valid, pa.bool_()))
        listed = names.to_pylist()
        if keep is None:
            distinct = set(listed)
            if len(distinct) == len(listed) and self.seen.isdisjoint(distinct):
                self.seen |= distinct
            else:
                keep = self._first_sightings(listed, None)
        else:
            keep = self._first_sightings(listed, keep.to_pylist())
        table = self._assemble(names, raw, pa.array(registrable_domains(listed), pa.string()), ref_pages, ranks)
        return table if keep is None else table.filter(keep)

    def _first_sightings(self, names: list[str], valid: list[bool] | None) -> pa.Array:
        """The same donor twice (case, trailing dot, IDN form; in this page or an earlier one): one row."""
        keep = []
        seen = self.seen
        for index, name in enumerate(names):
            fresh = (valid is None or valid[index]) and name not in seen
            if fresh:
                seen.add(name)
            keep.append(fresh)
        return pa.array(keep, pa.bool_())

    def _assemble(self, names: pa.Array, raw: pa.Array, registrable: pa.Array, ref_pages: pa.Array,
                  ranks: pa.Array) -> pa.Table:
        columns = {field.name: pa.repeat(pa.scalar(self.constants[field.name], field.type), len(names))
                   for field in REF_DOMAINS_SCHEMA if field.name in self.constants}
        columns |= {"ref_domain": names, "domain_from": raw, "registrable_domain": registrable,
                    "ref_pages": ref_pages, "domain_rank": ranks}
        return pa.Table.from_arrays([columns[field.name] for field in REF_DOMAINS_SCHEMA], schema=REF_DOMAINS_SCHEMA)

    # --- the row path ----------------------------------------------------------------------
    def _row_by_row(self, rows: list[Any]) -> pa.Table:
        names, raws, pages, ranks = [], [], [], []
        extras: dict[str, list[Any]] = {}
        kept = 0
        seen = self.seen
        for row in rows:
            try:
                if not isinstance(row, dict):
                    raise InvalidDomain("row is not an object")
                raw = row.get("domain_from")
                name = normalize_domain(raw)
            except InvalidDomain as error:
                self.reject(error.reason)
                continue
            if name in seen:
                continue
            seen.add(name)
            ref_pages = self._metric(row.get("ref_pages"), "ref_pages")
            rank = self._metric(row.get("domainRank"), "domainRank")
            names.append(name)
            raws.append(raw)
            pages.append(ref_pages)
            ranks.append(rank)
            if not row.keys() <= KNOWN_FIELDS:
                for key in row.keys() - KNOWN_FIELDS:
                    extras.setdefault(key, [None] * kept).append(row[key])
            kept += 1
            for column in extras.values():
                if len(column) < kept:
                    column.append(None)
        table = self._assemble(pa.array(names, pa.string()), pa.array(raws, pa.string()),
                               pa.array(registrable_domains(names), pa.string()), pa.array(pages, pa.int64()),
                               pa.array(ranks, pa.int64()))
        for key, values in extras.items():
            table = table.append_column(_extra_name(key), _extra_array(values))
        return table

    def _metric(self, value: Any, metric: str) -> int | None:
        number = _count(value)
        if number is None and value is not None:
            self.nulled(metric, shown_value(value))
        return number


def _columns(rows: list[Any]) -> tuple[pa.Array, pa.Array, pa.Array] | None:
    """The page as three typed columns, or None when its shape needs the row path."""
    try:
        domains = [row.get("domain_from") for row in rows]
        pages = [row.get("ref_pages") for row in rows]
        ranks = [row.get("domainRank") for row in rows]
    except AttributeError:  # a row that is not an object
        return None
    if not all(map(KNOWN_FIELDS.issuperset, rows)):
        return None  # unknown fields: the row path keeps them as extra columns
    try:
        raw, ref_pages, rank = pa.array(domains), pa.array(pages), pa.array(ranks)
    except (pa.ArrowException, OverflowError, UnicodeError):
        return None  # mixed types, numbers past int64, unencodable text
    if raw.type != pa.string() or raw.null_count:
        return None  # a missing or non-text name is a rejected row: the row path counts the reason
    columns = []
    for column in (ref_pages, rank):
        if column.type == pa.null():
            column = column.cast(pa.int64())
        elif column.type != pa.int64() or (pc.min(column).as_py() or 0) < 0:
            return None  # numbers as strings, floats, booleans or negatives: checked row by row
        columns.append(column)
    return raw, columns[0], columns[1]


def _count(value: Any) -> int | None:
    """A usable metric as an int (see the module's docstring), else None."""
    if type(value) is int:
        return value if 0 <= value <= INT64_MAX else None
    if type(value) is float:
        number = int(value) if value.is_integer() else -1  # NaN and infinities are not integers
    elif isinstance(value, str) and _DIGITS.fullmatch(text := value.strip()):
        number = int(text)
    else:
        return None  # None, bools, other strings, lists, objects
    return number if 0 <= number <= INT64_MAX else None


def shown_value(value: Any) -> str:
    """A metric value as a user would recognise it in the run's output: 'n/a', '', -1, 1.5, true."""
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except ValueError:  # a circular structure cannot come from JSON, but stay total
            text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def describe_nulled(count: int, values: dict[str, int], top: int = 5) -> str | None:
    """'3 unusable metric values loaded as NULL: domainRank 'n/a' (2), ref_pages '' (1)'."""
    if not count:
        return None
    ranked = sorted(values.items(), key=lambda item: (-item[1], item[0]))
    named = ", ".join(f"{value} ({n})" for value, n in ranked[:top])
    rest = sum(n for _, n in ranked[top:])
    more = f", {rest} more" if rest else ""
    noun = "value" if count == 1 else "values"
    return f"{count} unusable metric {noun} loaded as NULL: {named}{more}"


def _extra_name(key: str) -> str:
    name = str(key)
    return f"api_{name}" if name.lower() in _RESERVED or not name else name


def _extra_array(values: list[Any]) -> pa.Array:
    """Unknown fields still load (dlt evolves the schema); odd shapes are kept as JSON text."""
    if all(v is None or (isinstance(v, (int, float, str, bool))) for v in values):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            pass
    return pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in values],
                    pa.string())

