"""Domain normalization: one spelling per donor, registrable domains from the bundled PSL."""

import pytest

from serpstat_refdomains.normalize import InvalidDomain, normalize_domain, normalize_target, registrable_domain


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
