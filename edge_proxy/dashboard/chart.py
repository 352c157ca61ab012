"""The usage chart: an SVG drawn on the server, one bar per day stacked by series, so the page needs no script.

Amounts stay integer nano-dollars; only pixel positions are floats. Every text in the SVG is escaped here, so
the result is safe to put in a page as it is. Colours are SVG presentation attributes, not `style`, which the
dashboard's Content-Security-Policy (no inline style) would block.
"""
from __future__ import annotations

from html import escape

from markupsafe import Markup

from .web import money

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
OTHER = "other"
WIDTH, HEIGHT = 900, 260
LEFT, RIGHT, TOP, BOTTOM = 84, 12, 12, 28


def top_series(totals: dict[str, int], most: int = len(PALETTE) - 1) -> list[str]:
    """The `most` largest series by total, largest first; the rest are drawn together as "other"."""
    return [name for name, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:most]]


def nice_ceiling(nanos: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten (in nano-dollars) at or above `nanos`; 1 for 0."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m >= nanos:
                return step * m
        step *= 10


def stacked_bars(title: str, days: list[str], values: dict[str, dict[str, int]], names: list[str]) -> Markup:
    """`values[day][series]` in nano-dollars, drawn with `names` (top_series) in order and the rest as "other"."""
    stacks = []
    for day in days:
        by_name = values.get(day, {})
        parts = [(n, by_name.get(n, 0)) for n in names]
        rest = sum(v for n, v in by_name.items() if n not in names)
        if rest:
            parts.append((OTHER, rest))
        stacks.append(parts)
    peak = nice_ceiling(max((sum(v for _, v in s) for s in stacks), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.7, 1.0)
    colour = {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}
    colour[OTHER] = "#bab0ac"
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>')
    out = [head]
    for i in range(5):  # gridlines and y labels at 0, 1/4, ... of the peak
        amount = peak * i // 4
        y = TOP + plot_h - plot_h * i / 4
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e3e3"/>'
                   f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">'
                   f'{escape(money(amount))}</text>')
    label_every = max(1, len(days) // 10)
    for i, (day, parts) in enumerate(zip(days, stacks)):
        x = LEFT + i * slot + (slot - bar) / 2
        y = TOP + plot_h
        for name, amount in parts:
            if amount <= 0:
                continue
            h = plot_h * amount / peak
            y -= h
            out.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{max(h, 0.5):.1f}" '
                       f'fill="{colour[name]}" data-day="{escape(day)}" data-series="{escape(name)}">'
                       f'<title>{escape(day)} · {escape(name)}: {escape(money(amount))}</title></rect>')
        if i % label_every == 0:
            out.append(f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle" font-size="11" '
                       f'fill="#555">{escape(day[5:])}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def legend(names: list[str], with_other: bool) -> list[tuple[str, str]]:
    """(series, colour) pairs for the legend under the chart."""
    pairs = [(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]
    return pairs + [(OTHER, "#bab0ac")] if with_other else pairs
