"""The funnel's chart, drawn on the server as inline SVG: no script, no third party.
Python does the arithmetic; templates/admin/funnel.html writes the elements (their
presentation attributes, which a strict CSP lets through where a style attribute
would not be)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 640
HEIGHT = 200
MARGIN = 24


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    x: float
    width: float
    views: int
    views_y: float
    views_height: float
    signups: int
    signups_y: float
    signups_height: float


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    baseline: float
    peak: int
    bars: tuple[Bar, ...]


def bar_chart(series: Sequence[tuple[str, int, int]]) -> Chart:
    """`series` of (label, views, signups), one pair of bars each: views behind,
    signups (delivered or queued) in front, on one scale."""
    peak = max((max(views, signups) for _, views, signups in series), default=0)
    plot = HEIGHT - 2 * MARGIN
    slot = (WIDTH - 2 * MARGIN) / max(1, len(series))
    baseline = HEIGHT - MARGIN

    def height(value: int) -> float:
        return round(plot * value / peak, 1) if peak else 0.0

    bars = tuple(
        Bar(
            label=label,
            x=round(MARGIN + index * slot + slot * 0.1, 1),
            width=round(slot * 0.8, 1),
            views=views,
            views_y=round(baseline - height(views), 1),
            views_height=height(views),
            signups=signups,
            signups_y=round(baseline - height(signups), 1),
            signups_height=height(signups),
        )
        for index, (label, views, signups) in enumerate(series)
    )
    return Chart(WIDTH, HEIGHT, baseline, peak, bars)
