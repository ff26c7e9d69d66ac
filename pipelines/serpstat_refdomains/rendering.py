"""Tables as a report shows them: aligned text for a terminal, and sortable HTML tables whose
donor cells link to the donor's site. Shared by every section of `refdomains report`."""

from __future__ import annotations

import html
from typing import Any


def text_table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    cells = [columns] + [["" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip() for row in cells]


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def donor_link(row: dict[str, Any]) -> str:
    """The donor's display name, linked to its site (the punycode host, which every browser takes)."""
    shown = row.get("ref_domain_unicode") or row["ref_domain"]
    return (f'<a href="https://{html.escape(row["ref_domain"])}/" rel="noopener noreferrer nofollow" '
            f'title="{html.escape(row["ref_domain"])}">{html.escape(shown)}</a>')


def html_table(rows: list[dict[str, Any]], columns: list[str], labels: dict[str, str] | None = None) -> str:
    if not rows:
        return "<p>None.</p>"
    labels = labels or {}
    head = "".join(f"<th>{html.escape(labels.get(c, c))}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            if c == "ref_domain" and value is not None:
                shown = html.escape(row.get("ref_domain_unicode") or value)
                cells.append(f'<td data-v="{shown}">{donor_link(row)}</td>')
            elif isinstance(value, bool) or value is None:
                cells.append(f"<td>{'' if value is None else ('yes' if value else 'no')}</td>")
            elif isinstance(value, (int, float)):
                cells.append(f'<td class="num" data-v="{value}">{number(value)}</td>')
            else:
                cells.append(f"<td>{html.escape(str(value))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")
