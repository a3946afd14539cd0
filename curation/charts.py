"""Small server-rendered SVG charts (no JavaScript): grouped bars of shares between 0 and 1.

Every label goes through format_html, so text from the database (rule ids, version notes) is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# Colour per series, in order; the CSS classes keep them themeable.
SERIES_CLASSES = ("s0", "s1", "s2")


@dataclass
class Group:
    label: str
    values: Sequence[float | None]  # one per series; None draws nothing (undefined)
    note: str = ""  # under the label, e.g. "n=40"


def grouped_bars(
    groups: Sequence[Group],
    series: Sequence[str],
    *,
    title: str,
    height: int = 180,
    bar: int = 16,
    gap: int = 18,
) -> SafeString:
    """Vertical grouped bars on a 0–100% axis, with a legend and each bar's value on top."""
    if not groups:
        return format_html('<p class="muted">{}</p>', "No data yet.")
    left, top, bottom = 34, 22, 36
    group_width = bar * len(series) + gap
    width = left + group_width * len(groups) + gap
    plot = height - top - bottom
    parts = [
        format_html(
            '<svg class="chart" role="img" viewBox="0 0 {} {}" width="{}" height="{}" aria-label="{}">'
            "<title>{}</title>",
            width,
            height,
            width,
            height,
            title,
            title,
        )
    ]
    for tick in (0, 0.5, 1):
        y = top + plot * (1 - tick)
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="tick" x="{}" y="{}" text-anchor="end">{}%</text>',
                left,
                width,
                y,
                y,
                left - 4,
                y + 4,
                round(tick * 100),
            )
        )
    for g, group in enumerate(groups):
        x0 = left + gap + g * group_width
        for s, value in enumerate(group.values):
            if value is None:
                continue
            h = max(1.0, plot * value)
            x = x0 + s * bar
            parts.append(
                format_html(
                    '<rect class="{}" x="{}" y="{}" width="{}" height="{}"><title>{}: {}%</title></rect>'
                    '<text class="value" x="{}" y="{}" text-anchor="middle">{}</text>',
                    SERIES_CLASSES[s % len(SERIES_CLASSES)],
                    x,
                    round(top + plot - h, 1),
                    bar - 2,
                    round(h, 1),
                    series[s],
                    round(value * 100),
                    x + (bar - 2) / 2,
                    round(top + plot - h - 3, 1),
                    round(value * 100),
                )
            )
        center = x0 + (bar * len(series)) / 2
        parts.append(
            format_html(
                '<text class="label" x="{}" y="{}" text-anchor="middle">{}</text>'
                '<text class="note" x="{}" y="{}" text-anchor="middle">{}</text>',
                center,
                height - bottom + 14,
                group.label,
                center,
                height - bottom + 27,
                group.note,
            )
        )
    parts.append("</svg>")
    legend = format_html_join(
        "",
        '<span class="key {}"></span>{} ',
        ((SERIES_CLASSES[i % len(SERIES_CLASSES)], name) for i, name in enumerate(series)),
    )
    return format_html(
        '<figure class="chart">{}<figcaption>{}</figcaption></figure>', mark_safe("".join(parts)), legend
    )
