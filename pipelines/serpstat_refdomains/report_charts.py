"""The report's inline SVG charts: sizes on an axis from zero, so a change of 5 on 673 looks like
what it is, and the changes themselves as bars on a scale the caption states."""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable

from .rendering import number
from .report_periods import Change

WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 520, 230, 56, 16, 14, 30
NEW_COLOR, LOST_COLOR, NET_COLOR = "#15803d", "#b91c1c", "#1f2933"


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten apart) from at or below lo to at or
    above hi, so the axis always covers every value."""
    span = max(hi - lo, 1e-9)
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def _open(title: str, kind: str) -> list[str]:
    return [f'<svg role="img" aria-label="{html.escape(title)}" class="chart {kind}" viewBox="0 0 {WIDTH} {HEIGHT}" '
            f'preserveAspectRatio="xMidYMid meet"><title>{html.escape(title)}</title>']


def _grid(ticks: list[float], y: Callable[[float], float], label: Callable[[float], str] = number) -> list[str]:
    return [f'<line x1="{LEFT}" y1="{y(t):.1f}" x2="{WIDTH - RIGHT}" y2="{y(t):.1f}" '
            f'stroke="{"#9aa5b1" if t == 0 else "#e4e7eb"}"/><text x="{LEFT - 6}" y="{y(t) + 4:.1f}" '
            f'text-anchor="end">{label(t)}</text>' for t in ticks]


def sizes(title: str, lines: list[tuple[str, str, list[tuple[dt.date, int]]]]) -> str:
    """Referring domains over time, one line a site (name, color, (date, size) points), on an axis
    from zero: a site's size against its competitors', and a change drawn to scale."""
    points = [p for _, _, values in lines for p in values]
    if not points:
        return "<p>No complete full snapshot yet.</p>"
    ticks = nice_ticks(0, max(max(v for _, v in points), 10))
    days = [d.toordinal() for d, _ in points]
    d_lo, d_hi = min(days), max(days)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(day: dt.date) -> float:
        return LEFT + (plot_w / 2 if d_hi == d_lo else (day.toordinal() - d_lo) / (d_hi - d_lo) * plot_w)

    def y(value: float) -> float:
        return TOP + plot_h - value / ticks[-1] * plot_h

    parts = _open(title, "sizes") + _grid(ticks, y)
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 8}">{dt.date.fromordinal(d_lo)}</text>')
    if d_hi != d_lo:
        parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end">{dt.date.fromordinal(d_hi)}</text>')
    for name, color, values in lines:
        values = sorted(values)
        coords = " ".join(f"{x(d):.1f},{y(v):.1f}" for d, v in values)
        parts.append(f'<polyline class="series" data-name="{html.escape(name)}" fill="none" stroke="{color}" '
                     f'stroke-width="2" points="{coords}"/>')
        previous = None
        for d, v in values:
            change = "" if previous is None else f" ({v - previous:+,})"
            parts.append(f'<circle cx="{x(d):.1f}" cy="{y(v):.1f}" r="3" fill="{color}"><title>{html.escape(name)}, '
                         f'{d}: {v:,} referring domains{change}</title></circle>')
            previous = v
    parts.append("</svg>")
    return "".join(parts)


def change_bars(name: str, steps: list[Change]) -> tuple[str, int]:
    """New (up) and lost (down) per full snapshot, the net change as a dot; returns the chart and
    the scale (the axis runs from minus it to plus it) for the caption to state."""
    if not steps:
        return "<p>One full snapshot so far: no change to draw yet.</p>", 0
    peak = max(max(s.new, s.lost) for s in steps)
    ticks = nice_ticks(0, max(peak, 2), 2)  # whole domains: never a half-domain tick
    top = int(ticks[-1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    middle = TOP + plot_h / 2
    scale = (plot_h / 2) / top
    slot = plot_w / len(steps)
    bar = max(1.5, min(slot * 0.38, 28))
    both = sorted({*ticks, *(-t for t in ticks)})
    parts = _open(f"New and lost referring domains of {name} per full snapshot", "changes")
    parts += _grid(both, lambda t: middle - t * scale, lambda t: f"{t:+,.0f}" if t else "0")
    every = max(1, math.ceil(len(steps) / 8))
    for i, step in enumerate(steps):
        center = LEFT + i * slot + slot / 2
        label = (f"{step.start} → {step.end}: {step.new} new ({step.returning} returning), {step.lost} lost, "
                 f"net {step.net:+}")
        parts.append(f'<rect class="bar new" x="{center - bar:.1f}" y="{middle - step.new * scale:.1f}" '
                     f'width="{bar:.1f}" height="{step.new * scale:.1f}" fill="{NEW_COLOR}">'
                     f'<title>{label}</title></rect>')
        parts.append(f'<rect class="bar lost" x="{center:.1f}" y="{middle:.1f}" width="{bar:.1f}" '
                     f'height="{step.lost * scale:.1f}" fill="{LOST_COLOR}"><title>{label}</title></rect>')
        parts.append(f'<circle class="net" cx="{center:.1f}" cy="{middle - step.net * scale:.1f}" r="3.5" '
                     f'fill="{NET_COLOR}"><title>{label}</title></circle>')
        if i % every == 0 and step.end is not None:
            parts.append(f'<text x="{center:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                         f'{step.end.strftime("%m-%d")}</text>')
    parts.append("</svg>")
    return "".join(parts), top
