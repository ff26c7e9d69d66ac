"""API rows to Arrow: the columnar path must give exactly what the row-by-row path gives.

The columnar path is the fast one; the row path holds the rules (normalize_domain, _count).
Hypothesis builds pages of every shape Serpstat (or the emulator's faults) can send, and each
page's table and rejection reasons are compared between the two.
"""

import datetime as dt

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from serpstat_refdomains.rows import REF_DOMAINS_SCHEMA, SnapshotRows

CONSTANTS = {"snapshot_key": "t.com|domain_with_subdomains|full|2026-03-02", "target_domain": "t.com",
             "search_type": "domain_with_subdomains", "snapshot_date": dt.date(2026, 3, 2), "snapshot_kind": "full",
             "pulled_at": dt.datetime(2026, 3, 2, 6, tzinfo=dt.UTC)}

LABELS = st.sampled_from(["example", "Example", "EXAMPLE", "shop", "my_site", "a-b", "-bad", "bad-", "x" * 63, "x" * 64,
                          "bücher", "BÜCHER", "пример", "xn--bcher-kva", "XN--BCHER-KVA", "xn--zz", "straße",
                          "a b", "", "0", "日本"])
TOPS = st.sampled_from(["com", "COM", "co.uk", "de", "рф", "xn--p1ai", "blogspot.com", "ck", "kawasaki.jp"])
NAMES = st.one_of(
    st.builds(lambda labels, top, pre, post: pre + ".".join([*labels, top]) + post,
              st.lists(LABELS, min_size=1, max_size=3), TOPS,
              st.sampled_from(["", " ", "\t", "\u00a0", "\x1c"]), st.sampled_from(["", ".", "..", " ", ". "])),
    st.sampled_from([None, "", ".", 42, ["x.com"], "a/b.com", "a:b.com", ("a." * 130) + "com"]),
)
NUMBERS = st.one_of(st.none(), st.integers(0, 10**6), st.integers(-5, -1), st.just(2**63 - 1), st.just(2**64),
                    st.sampled_from(["47", " 8 ", "x", "1.5", True, False, 3.0, 3.5, [1], "", "n/a", "-1", "+5", "1_0",
                                     "\u0663", "1e3", 47.0, -0.0, float("nan"), float("inf"), 2.0**63, 10**30,
                                     {"value": 1}, [], "9223372036854775808"]))


def _row(name, pages, rank, shape):
    row = {"domain_from": name, "ref_pages": pages, "domainRank": rank}
    if shape == "missing":
        del row["ref_pages"]
    elif shape == "extra":
        row["backlinks"] = 7
    elif shape == "not an object":
        return [name, pages, rank]
    return row


ROWS = st.builds(_row, NAMES, NUMBERS, NUMBERS, st.sampled_from(["plain"] * 12 + ["missing", "extra", "not an object"]))
CLEAN_ROWS = st.builds(_row, NAMES, st.one_of(st.none(), st.integers(0, 10**6)), st.integers(0, 100), st.just("plain"))


def _convert(pages, row_by_row):
    reasons, nulled = [], []
    rows = SnapshotRows(CONSTANTS, reasons.append, lambda metric, value: nulled.append((metric, value)))
    tables = [rows._row_by_row(page) if row_by_row else rows.table(page) for page in pages]
    return pa.concat_tables(tables, promote_options="default") if tables else None, reasons, nulled


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.lists(st.one_of(st.lists(CLEAN_ROWS, max_size=40), st.lists(ROWS, max_size=40)), min_size=1, max_size=4))
def test_columnar_pages_equal_row_by_row(pages):
    fast, fast_reasons, fast_nulled = _convert(pages, row_by_row=False)
    slow, slow_reasons, slow_nulled = _convert(pages, row_by_row=True)
    assert fast.schema.names[:len(REF_DOMAINS_SCHEMA)] == REF_DOMAINS_SCHEMA.names
    assert fast.to_pylist() == slow.to_pylist()
    assert fast_reasons == slow_reasons
    assert fast_nulled == slow_nulled
    # a donor is rejected for its name (or for not being an object), never for a metric
    assert all(reason.startswith(("domain", "invalid", "row is not")) for reason in fast_reasons)
    # each report is a NULL in a loaded row (the others are nulls or absent fields as sent)
    nulls = sum((row["ref_pages"] is None) + (row["domain_rank"] is None) for row in fast.to_pylist())
    assert len(fast_nulled) <= nulls


def test_clean_pages_take_the_columnar_path_and_duplicates_collapse():
    page = [{"domain_from": "Shop.Example.COM.", "ref_pages": 3, "domainRank": 40},
            {"domain_from": "shop.example.com", "ref_pages": 5, "domainRank": 41},  # the same donor
            {"domain_from": "Bücher.de", "ref_pages": 1, "domainRank": 2},
            {"domain_from": "bad..name.com", "ref_pages": 1, "domainRank": 2}]
    reasons = []
    rows = SnapshotRows(CONSTANTS, reasons.append)
    table = rows.table(page)
    again = rows.table([{"domain_from": "xn--bcher-kva.de", "ref_pages": 9, "domainRank": 9}])  # seen on page 1
    loaded = [(r["ref_domain"], r["domain_from"], r["registrable_domain"], r["ref_pages"]) for r in table.to_pylist()]
    assert loaded == [
        ("shop.example.com", "Shop.Example.COM.", "example.com", 3),
        ("xn--bcher-kva.de", "Bücher.de", "xn--bcher-kva.de", 1)]
    assert again.num_rows == 0
    assert reasons == ["invalid label"]
    assert table.column("snapshot_key").to_pylist() == [CONSTANTS["snapshot_key"]] * 2


BAD_METRICS = [("", None), (-1, None), ("n/a", None), (1.5, None), (True, None), (False, None), (10**30, None),
               ({"v": 1}, None), ([3], None), ("-1", None), ("1.5", None), ("1e3", None), (float("nan"), None),
               ("47", 47), (" 47 ", 47), (47.0, 47), (0, 0), (2**63 - 1, 2**63 - 1), (None, None)]


def test_a_bad_metric_nulls_the_metric_and_keeps_the_donor():
    """The rule for usable metrics, path by path: every donor loads; an unusable value is NULL and
    named (metric, value as sent); a usable one is coerced; null is NULL without a report."""
    page = [{"domain_from": f"d{i}.com", "ref_pages": value, "domainRank": value}
            for i, (value, _) in enumerate(BAD_METRICS)]
    for row_by_row in (False, True):
        table, reasons, nulled = _convert([page], row_by_row)
        rows = table.to_pylist()
        assert [r["ref_domain"] for r in rows] == [f"d{i}.com" for i in range(len(BAD_METRICS))]
        assert [(r["ref_pages"], r["domain_rank"]) for r in rows] == [(want, want) for _, want in BAD_METRICS]
        assert reasons == []
        unusable = [value for value, want in BAD_METRICS if want is None and value is not None]
        assert len(nulled) == 2 * len(unusable)
    assert ("domainRank", "'n/a'") in nulled and ("ref_pages", "''") in nulled and ("ref_pages", "-1") in nulled
    assert ("domainRank", "1.5") in nulled and ("domainRank", "true") in nulled


def test_nulled_metrics_are_described_most_frequent_first():
    from serpstat_refdomains.rows import describe_nulled

    assert describe_nulled(0, {}) is None
    text = describe_nulled(3, {"ref_pages ''": 1, "domainRank 'n/a'": 2})
    assert text == "3 unusable metric values loaded as NULL: domainRank 'n/a' (2), ref_pages '' (1)"
    many = describe_nulled(7, {f"domainRank {i}.5": 1 for i in range(7)})
    assert many.endswith(", 2 more") and many.count("(1)") == 5
