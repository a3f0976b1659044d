"""A patient's scores on one instrument over time, as SVG drawn on the server (pure: data in, SVG text out).

No script and no style attribute (the console's CSP allows neither): SVG presentation attributes only. The chart
has an accessible name and description; the page gives the same scores as a table. What counts as a reliable
change and where caseness begins are the measures policy's (intake answers them with the series): the band is the
baseline give or take the reliable change, less than which a change is not reliable; the dashed line is caseness.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape as html_escape

WIDTH, HEIGHT = 640, 270
LEFT, RIGHT, TOP, BOTTOM = 40, 16, 14, 52
LEGEND_SLOT = 300
PLOT = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
"""The plot area: x0, y0, x1, y1 (every point drawn stays inside it)."""
INK, BAND, CUT_OFF, GRID = "#12355b", "#d6e4f2", "#a4000f", "#6b6b6b"
MOST_DATE_LABELS = 6
LABEL_ROOM = 48
NOT_IN_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Score:
    at: datetime
    """When it was recorded, in the clinic's zone (the labels are its days)."""
    score: int
    said: str = ""
    """What intake said of it (its classification), in words."""


@dataclass(frozen=True)
class Series:
    instrument: str
    """The instrument's id (``phq9``): the chart's element ids."""
    label: str
    """Its name for people (``PHQ-9``)."""
    max_score: int
    scores: Sequence[Score]
    baseline: int | None = None
    reliable_change: int | None = None
    caseness: int | None = None


def svg(series: Series) -> str:
    """The chart: axes, the reliable-change band around the baseline, the caseness line, the scores in time order."""
    top = max(series.max_score, 1)
    scores = sorted(series.scores, key=lambda score: score.at)
    title, desc = f"chart-{series.instrument}-title", f"chart-{series.instrument}-desc"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img" '
        f'aria-labelledby="{title} {desc}">',
        f'<title id="{title}">{escape(series.label)} scores over time</title>',
        f'<desc id="{desc}">{escape(description(series, scores))}</desc>',
        f'<rect x="{PLOT[0]}" y="{PLOT[1]}" width="{PLOT[2] - PLOT[0]}" height="{PLOT[3] - PLOT[1]}" fill="#ffffff" '
        f'stroke="{GRID}"/>',
        *_band(series, top),
        *_y_axis(top),
        *_caseness(series, top),
        *_scores(scores, top),
    ]
    return "".join(parts) + "</svg>"


def escape(text: str) -> str:
    """Text for the SVG: escaped, without the characters XML cannot hold (a control character from a label)."""
    return html_escape(NOT_IN_XML.sub("", text))


def description(series: Series, scores: Sequence[Score]) -> str:
    if not scores:
        return f"No {series.label} score yet."
    first, last = scores[0], scores[-1]
    said = [f"{len(scores)} score{'s' if len(scores) > 1 else ''} from {first.score} on {_day(first.at)} to "
            f"{last.score} on {_day(last.at)} (highest possible {series.max_score})."]  # fmt: skip
    if series.baseline is not None and series.reliable_change is not None:
        said.append(f"Baseline {series.baseline}; a change of {series.reliable_change} points or more is reliable.")
    if series.caseness is not None:
        said.append(f"Caseness from {series.caseness}.")
    return " ".join(said)


def _day(moment: datetime) -> str:
    return moment.strftime("%d %b %Y")


def _y(score: float, top: int) -> float:
    """A score's height in the plot (a score outside 0..top is drawn at the edge it passed)."""
    share = min(max(score, 0), top) / top
    return round(PLOT[3] - share * (PLOT[3] - PLOT[1]), 2)


def _x(moment: datetime, first: datetime, last: datetime) -> float:
    span = (last - first).total_seconds()
    share = 0.5 if span <= 0 else (moment - first).total_seconds() / span
    inset = 12  # the first and last points clear the plot's edges
    return round(PLOT[0] + inset + share * (PLOT[2] - PLOT[0] - 2 * inset), 2)


def _band(series: Series, top: int) -> list[str]:
    if series.baseline is None or series.reliable_change is None:
        return []
    high, low = _y(series.baseline + series.reliable_change, top), _y(series.baseline - series.reliable_change, top)
    base = _y(series.baseline, top)
    label = f"baseline {series.baseline} ± {series.reliable_change}: no reliable change"
    return [
        f'<rect x="{PLOT[0]}" y="{high}" width="{PLOT[2] - PLOT[0]}" height="{round(low - high, 2)}" fill="{BAND}"/>',
        f'<line x1="{PLOT[0]}" y1="{base}" x2="{PLOT[2]}" y2="{base}" stroke="{INK}" stroke-dasharray="2 3"/>',
        *_legend(0, f'stroke="{BAND}" stroke-width="10"', label),
    ]


def _legend(slot: int, stroke: str, label: str) -> list[str]:
    """A key under the chart (never over a point): a stroke like the one drawn, and its words."""
    x, y = PLOT[0] + slot * LEGEND_SLOT, HEIGHT - 10
    return [
        f'<line x1="{x}" y1="{y - 4}" x2="{x + 22}" y2="{y - 4}" {stroke}/>',
        f'<text x="{x + 28}" y="{y}" font-size="11" fill="#1a1a1a">{escape(label)}</text>',
    ]


def _y_axis(top: int) -> list[str]:
    step = 5 if top <= 40 else 10
    ticks = sorted({*(tick for tick in range(0, top, step) if top - tick >= step / 2), top})  # apart enough to read
    parts = []
    for tick in ticks:
        y = _y(tick, top)
        parts.append(f'<line x1="{PLOT[0] - 4}" y1="{y}" x2="{PLOT[0]}" y2="{y}" stroke="{GRID}"/>')
        parts.append(f'<text x="{PLOT[0] - 7}" y="{y + 4}" text-anchor="end" font-size="11" fill="#1a1a1a">{tick}'
                     "</text>")  # fmt: skip
    return parts


def _caseness(series: Series, top: int) -> list[str]:
    if series.caseness is None or not 0 <= series.caseness <= top:
        return []
    y = _y(series.caseness, top)
    dashed = f'stroke="{CUT_OFF}" stroke-width="1.5" stroke-dasharray="6 4"'
    return [
        f'<line x1="{PLOT[0]}" y1="{y}" x2="{PLOT[2]}" y2="{y}" {dashed}/>',
        *_legend(1, dashed, f"caseness {series.caseness}"),
    ]


def _scores(scores: Sequence[Score], top: int) -> list[str]:
    if not scores:
        middle = (PLOT[1] + PLOT[3]) / 2
        return [f'<text x="{WIDTH / 2}" y="{middle}" text-anchor="middle" font-size="14" fill="#1a1a1a">No score yet'
                "</text>"]  # fmt: skip
    first, last = scores[0].at, scores[-1].at
    placed = [(_x(score.at, first, last), _y(score.score, top), score) for score in scores]
    line = " ".join(f"{x},{y}" for x, y, _ in placed)
    parts = [f'<polyline points="{line}" fill="none" stroke="{INK}" stroke-width="2"/>']
    for x, y, score in placed:
        said = f"{_day(score.at)}: {score.score}" + (f" ({score.said})" if score.said else "")
        parts.append(f'<circle cx="{x}" cy="{y}" r="4" fill="{INK}"><title>{escape(said)}</title></circle>')
    return parts + _date_labels(placed)


def _date_labels(placed: Sequence[tuple[float, float, Score]]) -> list[str]:
    """Each point's day under the axis when few, else the first and last; none crowding the one before."""
    labelled = placed if len(placed) <= MOST_DATE_LABELS else [placed[0], placed[-1]]
    parts: list[str] = []
    last_x = -float(LABEL_ROOM)
    for x, _, score in labelled:
        if x - last_x < LABEL_ROOM:
            continue
        parts.append(f'<text x="{x}" y="{PLOT[3] + 16}" text-anchor="middle" font-size="11" fill="#1a1a1a">'
                     f"{escape(score.at.strftime('%d %b'))}</text>")  # fmt: skip
        last_x = x
    return parts
