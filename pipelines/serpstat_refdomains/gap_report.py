"""The report's link-gap section (README: Competitors and link gap): per tracked domain, the donors
of its competitors that do not link to it, highest domain rank first."""

from __future__ import annotations

import html
from typing import Any

from .rendering import html_table, text_table

TOP = 25
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


def _per_target(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((row["target_domain"], row["search_type"]), []).append(row)
    return grouped


def text_section(rows: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for (target, _), gap in _per_target(rows).items():
        out += ["", f"LINK GAP of {target} ({len(gap)} donors link to its competitors, not to it), "
                    "highest domain rank first:"]
        out += text_table(gap[:TOP], _TEXT_SHOWN)
        if len(gap) > TOP:
            out.append(f"... {len(gap) - TOP} more")
    return out


def html_section(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    parts = ["<h2>Link-gap opportunities <small>donors of competitors that do not link to you, "
             "highest domain rank first</small></h2>"]
    for (target, search_type), gap in _per_target(rows).items():
        already = sum(1 for r in gap if r["site_already_links"])
        parts.append(f'<section class="gap" data-target="{html.escape(target)}"><h3>{html.escape(target)} '
                     f"<small>{html.escape(search_type)}</small></h3>"
                     f'<div class="kpis"><span>opportunities: <b>{len(gap):,}</b></span>'
                     f"<span>from sites that already link to you: <b>{already:,}</b></span></div>"
                     f"{html_table(gap[:TOP], _HTML_SHOWN, _LABELS)}</section>")
    return "\n".join(parts)


def alerts_html(preview: str | None) -> str:
    """The demo's alert preview (`refdomains alerts --dry-run`), as it would be sent."""
    if not preview:
        return ""
    return (f"<h2>Alerts <small>dry run: what the next alert would send</small></h2>"
            f'<pre class="alerts">{html.escape(preview)}</pre>')
