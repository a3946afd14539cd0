"""Small server-rendered SVG charts (no JavaScript): grouped bars of shares between 0 and 1.

Every label goes through format_html, so text from the database (rule ids, version notes) is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# Colour per series, in order; the CSS classes keep them themeable.
SERIES_CLASSES = ("s0", "s1", "s2")


def _svg_open(css_class: str, width: int, height: int, title: str) -> SafeString:
    return format_html(
        '<svg class="{}" role="img" viewBox="0 0 {} {}" width="{}" height="{}" aria-label="{}">'
        "<title>{}</title>",
        css_class,
        width,
        height,
        width,
        height,
        title,
        title,
    )


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
    parts = [_svg_open("chart", width, height, title)]
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


def line_chart(
    points: Sequence[tuple[float, float]],
    *,
    title: str,
    x_label: str = "step",
    y_label: str = "loss",
    width: int = 560,
    height: int = 220,
    log_y: bool | None = None,
) -> SafeString:
    """One series as a polyline, the y axis fitted to the values, with the first and last x and the lowest
    and highest y as ticks; a single point is drawn as a dot. `log_y` None: a log y axis when every value is
    positive and they span more than two decades (a fine-tune's loss often falls from ~2 to ~0.001)."""
    if not points:
        return format_html('<p class="muted">{}</p>', "No data yet.")
    left, right, top, bottom = 60, 12, 14, 34
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_min, x_max, y_min, y_max = min(xs), max(xs), min(ys), max(ys)
    if log_y is None:
        log_y = y_min > 0 and y_max / y_min > 100
    elif log_y and y_min <= 0:
        log_y = False  # a log axis cannot show zero or negative values

    def scale(y: float) -> float:
        return math.log10(y) if log_y else y

    x_span, y_span = (x_max - x_min) or 1, (scale(y_max) - scale(y_min)) or 1
    plot_w, plot_h = width - left - right, height - top - bottom
    if log_y:
        y_label = f"{y_label} (log scale)"

    def at(x: float, y: float) -> tuple[float, float]:
        return round(left + plot_w * (x - x_min) / x_span, 1), round(
            top + plot_h * (1 - (scale(y) - scale(y_min)) / y_span), 1
        )

    coords = " ".join(f"{x},{y}" for x, y in (at(*p) for p in points))
    parts = [_svg_open("chart line", width, height, title)]
    for value in {y_min, y_max}:
        y = at(x_min, value)[1]
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="tick" x="{}" y="{}" text-anchor="end">{}</text>',
                left,
                width - right,
                y,
                y,
                left - 4,
                y + 4,
                _tick(value),
            )
        )
    for value in {x_min, x_max}:
        x = at(value, y_min)[0]
        parts.append(
            format_html(
                '<text class="tick" x="{}" y="{}" text-anchor="middle">{}</text>',
                x,
                height - bottom + 14,
                f"{value:g}",
            )
        )
    parts.append(
        format_html(
            '<text class="label" x="{}" y="{}" text-anchor="middle">{}</text>'
            '<text class="label" x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>',
            left + plot_w / 2,
            height - 6,
            x_label,
            top + plot_h / 2,
            top + plot_h / 2,
            y_label,
        )
    )
    if len(points) == 1:
        x, y = at(*points[0])
        parts.append(format_html('<circle class="s0" cx="{}" cy="{}" r="3"/>', x, y))
    else:
        parts.append(format_html('<polyline class="series s0" fill="none" points="{}"/>', coords))
    parts.append("</svg>")
    return format_html('<figure class="chart">{}</figure>', mark_safe("".join(parts)))


def _tick(value: float) -> str:
    """A y tick label of at most ~7 characters: 1.78, 0.0123, 5.4e-04, 1.2e+05."""
    if value != 0 and not 0.01 <= abs(value) < 100_000:
        return f"{value:.1e}"
    return f"{value:.3g}"
