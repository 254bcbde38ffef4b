"""Bar charts drawn on the server as SVG: no JavaScript, no inline styles.

Colours and type come from classes in web/assets/frontdoor.scss (``fd-chart``, ``fd-chart__bar``,
``fd-chart__track``, ``fd-chart__label``, ``fd-chart__value``, ``fd-chart__target``).  A chart only
repeats figures: the page always puts a table of the same figures beside it, and the SVG carries a
title and a description for screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup, escape


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: nothing to show (no figures), drawn as an empty track
    text: str  # the value in words, written at the end of the bar ("8 of 10 (80%)")


# Geometry, in SVG user units (the chart scales to its container's width).
_WIDTH = 640
_LABEL_WIDTH = 250
_VALUE_WIDTH = 130
_BAR_HEIGHT = 28
_GAP = 14
_TOP = 8


def bar_chart(
    chart_id: str,
    title: str,
    bars: list[Bar],
    maximum: float = 100.0,
    target: float | None = None,
    description: str | None = None,
) -> Markup:
    """A horizontal bar chart; ``target`` draws a line across every bar at that value."""
    plot = _WIDTH - _LABEL_WIDTH - _VALUE_WIDTH
    height = _TOP * 2 + len(bars) * (_BAR_HEIGHT + _GAP)
    safe_id = escape(chart_id)
    summary = description or "; ".join(f"{bar.label}: {bar.text}" for bar in bars)
    parts = [
        f'<svg class="fd-chart" id="{safe_id}" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-labelledby="{safe_id}-title {safe_id}-desc" focusable="false" '
        f'preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{safe_id}-title">{escape(title)}</title>',
        f'<desc id="{safe_id}-desc">{escape(summary)}</desc>',
    ]
    for index, bar in enumerate(bars):
        y = _TOP + index * (_BAR_HEIGHT + _GAP)
        middle = y + _BAR_HEIGHT / 2
        parts.append(
            f'<text class="fd-chart__label" x="{_LABEL_WIDTH - 10}" y="{middle:g}" '
            f'text-anchor="end" dominant-baseline="middle">{escape(bar.label)}</text>'
        )
        parts.append(
            f'<rect class="fd-chart__track" x="{_LABEL_WIDTH}" y="{y}" '
            f'width="{plot}" height="{_BAR_HEIGHT}"/>'
        )
        if bar.value is not None and maximum > 0:
            width = max(0.0, min(1.0, bar.value / maximum)) * plot
            if width > 0:
                parts.append(
                    f'<rect class="fd-chart__bar" x="{_LABEL_WIDTH}" y="{y}" '
                    f'width="{width:.1f}" height="{_BAR_HEIGHT}"/>'
                )
        parts.append(
            f'<text class="fd-chart__value" x="{_WIDTH - _VALUE_WIDTH + 10}" y="{middle:g}" '
            f'dominant-baseline="middle">{escape(bar.text)}</text>'
        )
    if target is not None and maximum > 0:
        x = _LABEL_WIDTH + max(0.0, min(1.0, target / maximum)) * plot
        parts.append(
            f'<line class="fd-chart__target" x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP / 2:g}" '
            f'y2="{height - _TOP / 2:g}"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
