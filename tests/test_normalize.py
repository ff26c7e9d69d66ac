"""Domain normalization: one spelling per donor, registrable domains from the bundled PSL."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serpstat_refdomains.errors import InvalidDomain
from serpstat_refdomains.normalize import normalize_domain, normalize_target, registrable_domain


@pytest.mark.parametrize("raw, expected", [
    ("Example.COM", "example.com"),
    ("example.com.", "example.com"),
    ("  www.Example.com ", "www.example.com"),
    ("Bücher.de", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
    ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ("straße.at", "xn--strae-oqa.at"),  # non-transitional: ß is kept, not mapped to ss
    ("my_site.blogspot.com", "my_site.blogspot.com"),
])
def test_normalize_domain(raw, expected):
    assert normalize_domain(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "   ", ".", "a b.com", "x" * 64 + ".com", "-bad-.com",
                                 "xn--zz.com", "a/b.com", 42, ["x.com"], ("a." * 130) + "com",
                                 "'; DROP TABLE ref_domains; --.com"])
def test_invalid_domains_are_refused(raw):
    with pytest.raises(InvalidDomain):
        normalize_domain(raw)


@pytest.mark.parametrize("domain, expected", [
    ("blog.example.co.uk", "example.co.uk"),
    ("www.example.com", "example.com"),
    ("foo.blogspot.com", "foo.blogspot.com"),
    ("xn--e1afmkfd.xn--p1ai", "xn--e1afmkfd.xn--p1ai"),
    ("co.uk", "co.uk"),
])
def test_registrable_domain(domain, expected):
    assert registrable_domain(domain) == expected


@pytest.mark.parametrize("raw, fragment", [
    ("https://example.com", "is a URL"),
    ("example.com/page", "is a URL"),
    ("my site.com", "not a domain"),
    ("localhost", "no dot"),
])
def test_targets_must_be_bare_domains(raw, fragment):
    with pytest.raises(InvalidDomain, match=fragment):
        normalize_target(raw)


def _names_from_every_rule() -> list[str]:
    """Each rule of the bundled list (wildcards filled in) as a name, and one to three labels under it."""
    from serpstat_refdomains.normalize import _PSL

    names = ["localhost", "com", "a.b.unknowntld", "x.www.ck", "a.foo.ck", "y.city.kawasaki.jp", "a.b.kawasaki.jp",
             "a.b.c.compute.amazonaws.com", "my_site.blogspot.com"]
    for rule in sorted(_PSL._publicsuffix):
        name = rule.lstrip("!").replace("*", "wild")
        if name.isascii():
            names += [name, f"a.{name}", f"b.a.{name}", f"c.b.a.{name}"]
    return names


def test_registrable_domains_agree_with_the_library_under_every_rule():
    """The batch form shares the library's answers by tail; under every rule it must give the
    library's answer name by name (exceptions, wildcards, rules up to five labels deep)."""
    from serpstat_refdomains.normalize import registrable_domains

    names = _names_from_every_rule()
    assert len(names) > 30_000
    expected = [registrable_domain(name) for name in names]
    assert registrable_domains(names) == expected


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.sampled_from(["a", "b", "co", "uk", "com", "jp", "kawasaki", "city", "ck", "www", "blogspot",
                                 "github", "io", "amazonaws", "compute", "xn--p1ai", "s3", "us-east-1"]),
                min_size=1, max_size=6))
def test_registrable_domains_agree_with_the_library_on_generated_names(labels):
    from serpstat_refdomains.normalize import registrable_domains

    name = ".".join(labels)
    assert registrable_domains([name]) == [registrable_domain(name)]


def _library_alabel(label: str) -> str | None:
    import idna

    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None


def test_plain_unicode_labels_encode_exactly_as_the_idna_library_does():
    """The shortcut for Unicode labels must never answer differently from `idna`: every BMP
    character, inside a label and doubled after an uppercase ASCII letter, either takes the
    library's path (None) or gives the library's A-label."""
    from serpstat_refdomains.normalize import _plain_alabel

    shortcut = 0
    for codepoint in range(0x80, 0x10000):
        if 0xD800 <= codepoint < 0xE000:
            continue
        char = chr(codepoint)
        for label in (f"a{char}b", f"X{char}{char}-9"):
            plain = _plain_alabel(label)
            if plain is not None:
                shortcut += 1
                assert plain == _library_alabel(label), (hex(codepoint), label)
    assert shortcut > 50_000  # the shortcut is taken for most letters of most scripts


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.text(alphabet=st.sampled_from(list("aZ9-_.ßςöÖéеЁяΣσ中日ー한ا\u05d0\u0301\u200d\u00b7\u30fb\u0660ﬁＡ")),
               min_size=1, max_size=12))
def test_generated_unicode_names_normalize_as_the_library_says(text):
    """Whole names with mixed scripts, combining marks, joiners, bidi and context characters:
    normalize_domain (shortcut included) agrees with the library label by label."""
    from serpstat_refdomains.normalize import _normalize_slow

    _normalize_slow.cache_clear()
    try:
        got = normalize_domain(text)
    except InvalidDomain:
        # refused: the library refuses one of its Unicode labels, or the name with each Unicode
        # label in the library's A-label form is refused too (an ASCII rule, or the length)
        labels = text.split(".")
        encoded = [label if label.isascii() else _library_alabel(label) for label in labels]
        if all(label is not None for label in encoded):
            with pytest.raises(InvalidDomain):
                normalize_domain(".".join(encoded))
        return
    for label, encoded in zip(text.strip().rstrip(".").split("."), got.split("."), strict=False):
        if not label.isascii():
            assert encoded == _library_alabel(label)


@pytest.mark.parametrize("label", ["ab--ö", "-ö", "ö-", "Öl", "ﬁx", "e\u0301x", "\u0301ex", "a\u200db", "a\u00b7b",
                                   "שלום", "日本", "ß", "ς", "ö" * 70, "Bücher"])
def test_hyphen_case_nfc_context_and_length_rules_match_the_library(label):
    from serpstat_refdomains.normalize import _plain_alabel

    plain = _plain_alabel(label)
    assert plain is None or plain == _library_alabel(label)
    if _library_alabel(label) is None:
        assert plain is None


# --- Unicode full stops (U+3002, U+FF0E, U+FF61): label separators, never part of a name --------
FULL_STOPS = ["\u3002", "\uff0e", "\uff61"]


@pytest.mark.parametrize("raw, expected", [
    ("example.com\u3002", "example.com"),
    ("example.com\uff0e", "example.com"),
    ("example.com\uff61", "example.com"),
    ("EXAMPLE\u3002COM", "example.com"),
    ("shop\uff0eexample\uff61co.uk\u3002 ", "shop.example.co.uk"),
    ("B\u00fccher\u3002de\uff0e", "xn--bcher-kva.de"),
    ("XN--BCHER-KVA\uff61DE", "xn--bcher-kva.de"),
])
def test_unicode_full_stops_separate_labels_and_a_trailing_one_is_stripped(raw, expected):
    from serpstat_refdomains.normalize import registrable_domains

    got = normalize_domain(raw)
    assert got == expected
    assert registrable_domains([got]) == [registrable_domain(got)] == [registrable_domain(expected)]


def test_full_stop_list_is_every_character_uts46_maps_to_a_dot():
    """normalize.py names the full stops instead of scanning Unicode at import: the list must be
    exactly the characters the bundled idna's UTS46 table maps to something holding a '.'."""
    import idna
    from idna.uts46data import uts46_replacements, uts46_starts

    from serpstat_refdomains.normalize import _FULL_STOPS

    found = set()
    for index, replacement in enumerate(uts46_replacements):
        if replacement and "." in replacement:
            end = uts46_starts[index + 1] if index + 1 < len(uts46_starts) else 0x110000
            for codepoint in range(uts46_starts[index], end):
                if "." in idna.uts46_remap(chr(codepoint), std3_rules=False):
                    found.add(chr(codepoint))
    assert found == {chr(c) for c in _FULL_STOPS} == set(FULL_STOPS)


_NAME_PARTS = st.sampled_from(["example", "Example", "EXAMPLE", "xn--bcher-kva", "XN--P1AI", "xn--zz", "b\u00fccher",
                               "B\u00dcCHER", "\u043f\u0440\u0438\u043c\u0435\u0440", "\u65e5\u672c", "stra\u00dfe",
                               "my_site", "a-b", "-x", "co", "uk", "com", "de", "blogspot", "\uff45\uff58", ""])
_SEPARATORS = st.sampled_from([".", ".", *FULL_STOPS])
_EDGES = st.sampled_from(["", "", " ", "\t", "\u3000", "\u00a0", ".", *FULL_STOPS, ". ", "\u3002 ", " \u3002"])


def _joined(pre: str, parts: list[str], seps: list[str], post: str) -> str:
    return pre + "".join(p + s for p, s in zip(parts, seps, strict=False))[:-1] + post


UNICODE_NAMES = st.one_of(
    st.builds(_joined,
              _EDGES, st.lists(_NAME_PARTS, min_size=1, max_size=4), st.lists(_SEPARATORS, min_size=4, max_size=4),
              _EDGES),
    st.text(alphabet=st.sampled_from(list("aZx-n_. \t\u00fc\u00dc\u00df\u043f\u65e5") + FULL_STOPS + ["\u3000"]),
            min_size=1, max_size=16),
)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.lists(UNICODE_NAMES, min_size=1, max_size=12))
def test_columnar_and_row_normalization_agree_on_unicode_names(names):
    """The column-wise path (rows.SnapshotRows.table) and the row path normalize a page of random
    Unicode names alike: same donors, same registrable domains, same rejections; and no accepted
    name keeps a full stop of any kind at its end or a Unicode one anywhere."""
    import datetime as dt

    from serpstat_refdomains.normalize import registrable_domains
    from serpstat_refdomains.rows import SnapshotRows

    constants = {"snapshot_key": "t.com|domain|full|2026-03-02", "target_domain": "t.com", "search_type": "domain",
                 "snapshot_date": dt.date(2026, 3, 2), "snapshot_kind": "full",
                 "pulled_at": dt.datetime(2026, 3, 2, 6, tzinfo=dt.UTC)}
    page = [{"domain_from": name, "ref_pages": 1, "domainRank": 2} for name in names]
    fast_reasons, slow_reasons = [], []
    fast = SnapshotRows(constants, fast_reasons.append).table(page).to_pylist()
    slow = SnapshotRows(constants, slow_reasons.append)._row_by_row(page).to_pylist()
    assert fast == slow and fast_reasons == slow_reasons
    for row in fast:
        name = row["ref_domain"]
        assert not name.endswith(".") and not any(stop in name for stop in FULL_STOPS)
        assert normalize_domain(name) == name
        assert row["registrable_domain"] == registrable_domain(name) == registrable_domains([name])[0]
