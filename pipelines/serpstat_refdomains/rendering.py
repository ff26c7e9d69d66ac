"""Tables as a report shows them: aligned text for a terminal, and sortable HTML tables whose
donor cells link to the donor's site, the long ones folded. Shared by every section of
`refdomains report`."""

from __future__ import annotations

import html
from typing import Any


def text_table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    cells = [columns] + [["" if r[c] is None else str(r[c]) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=False)).rstrip() for row in cells]


def text_top(rows: list[dict[str, Any]], columns: list[str], top: int) -> list[str]:
    """The first `top` rows as a text table, and a line saying how many more there are and where."""
    if not rows:
        return ["  (none)"]
    more = [f"… and {len(rows) - top:,} more (see --format csv)"] if len(rows) > top else []
    return text_table(rows[:top], columns) + more


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def donor_link(row: dict[str, Any]) -> str:
    """The donor's display name, linked to its site (the punycode host, which every browser takes)."""
    shown = row.get("ref_domain_unicode") or row["ref_domain"]
    return (f'<a href="https://{html.escape(row["ref_domain"])}/" rel="noopener noreferrer nofollow" '
            f'title="{html.escape(row["ref_domain"])}">{html.escape(shown)}</a>')


NUM = ' class="num"'


def html_table(rows: list[dict[str, Any]], columns: list[str], labels: dict[str, str] | None = None) -> str:
    if not rows:
        return "<p>None.</p>"
    labels = labels or {}

    def numeric(column: str) -> bool:  # its header aligns with its numbers
        values = [r.get(column) for r in rows if r.get(column) is not None]
        return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    head = "".join(f"<th{NUM if numeric(c) else ''}>{html.escape(labels.get(c, c))}</th>" for c in columns)
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


def folded(summary: str, body: str, *, opened: bool = False) -> str:
    """A part the reader opens: long tables stay out of the way but in the page (a mail client
    that does not know <details> shows them open)."""
    return f"<details{' open' if opened else ''}><summary>{summary}</summary>{body}</details>"


def html_top(rows: list[dict[str, Any]], columns: list[str], labels: dict[str, str], top: int, what: str) -> str:
    """The first `top` rows, then all of them folded when there are more."""
    shown = html_table(rows[:top], columns, labels)
    if len(rows) <= top:
        return shown
    return shown + folded(f"All {len(rows):,} {html.escape(what)}", html_table(rows, columns, labels))
