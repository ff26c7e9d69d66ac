"""The report's link-gap part of a tracked domain's group (docs/data.md, "Competitors and link gap"): the
donors of its competitors that do not link to it, highest domain rank first, and what the gap
did in the period (`link_gap_changes`)."""

from __future__ import annotations

import html
from typing import Any

from .rendering import html_top, text_top

TOP = 25
HTML_TOP = 10
COLUMNS = ["target_domain", "search_type", "ref_domain", "ref_domain_unicode", "registrable_domain",
           "competitors_linking", "competitor_domains", "max_domain_rank", "competitor_ref_pages",
           "site_already_links", "in_gap_since"]
_TEXT_SHOWN = ["ref_domain_unicode", "max_domain_rank", "competitors_linking", "competitor_domains",
               "site_already_links", "in_gap_since"]
_HTML_SHOWN = ["ref_domain", "max_domain_rank", "competitors_linking", "competitor_domains", "competitor_ref_pages",
               "site_already_links", "in_gap_since"]
_LABELS = {"ref_domain": "referring domain", "max_domain_rank": "rank", "competitors_linking": "competitors",
           "competitor_domains": "links to", "competitor_ref_pages": "their pages",
           "site_already_links": "site links to you", "in_gap_since": "in the gap since"}


# highest rank first per tracked domain (report.collect reads `link_gap` with the other models)
ORDER = "target_domain, search_type, max_domain_rank DESC NULLS LAST, competitors_linking DESC, ref_domain"


def period_counts(changes: list[dict[str, Any]], target: str) -> dict[str, int]:
    """The gap's events of one tracked domain in the period: opened, won (the donor now links to
    it) and closed otherwise (the competitors stopped linking)."""
    mine = [c for c in changes if c["target_domain"] == target]
    return {"opened": sum(1 for c in mine if c["change"] == "gap_opened"),
            "won": sum(1 for c in mine if c["change"] == "gap_closed" and c["won"]),
            "closed": sum(1 for c in mine if c["change"] == "gap_closed" and not c["won"])}


def _events(counts: dict[str, int]) -> str:
    return (f"in this period {counts['opened']:,} opened, {counts['won']:,} won (the donor now links to you), "
            f"{counts['closed']:,} closed by the competitors")


def text_section(rows: list[dict[str, Any]], counts: dict[str, int]) -> list[str]:
    """One tracked domain's gap (its rows of link_gap) for a terminal; nothing without competitors."""
    if not rows and not any(counts.values()):
        return []
    target = rows[0]["target_domain"] if rows else ""
    return ["", f"LINK GAP of {target} ({len(rows)} donors link to its competitors, not to it), "
                f"highest domain rank first; {_events(counts)}:", *text_top(rows, _TEXT_SHOWN, TOP)]


def html_section(target: str, rows: list[dict[str, Any]], counts: dict[str, int]) -> str:
    if not rows and not any(counts.values()):
        return ""
    already = sum(1 for r in rows if r["site_already_links"])
    return (f'<section class="gap" data-target="{html.escape(target)}"><h3>Link gap of {html.escape(target)} '
            f"<small>donors of its competitors that do not link to it, highest domain rank first</small></h3>"
            f'<div class="kpis"><span>opportunities now: <b>{len(rows):,}</b></span>'
            f"<span>from sites that already link to you: <b>{already:,}</b></span>"
            f"<span>{html.escape(_events(counts))}</span></div>"
            f"{html_top(rows, _HTML_SHOWN, _LABELS, HTML_TOP, 'opportunities')}</section>")
