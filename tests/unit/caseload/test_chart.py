"""The score chart (pure): any series draws as well-formed SVG whose points stay in the plot area, with its
accessible name, the reliable-change band around the baseline and the caseness line where the policy gives them."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.caseload.console.chart import HEIGHT, PLOT, Score, Series, svg

NS = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 11, 23, 14, 10, tzinfo=UTC)


def _inside(x: float, y: float) -> bool:
    return PLOT[0] <= x <= PLOT[2] and PLOT[1] <= y <= PLOT[3]


scores = st.builds(
    Score,
    at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    score=st.integers(min_value=-5, max_value=70),
    said=st.text(max_size=30),
)
series = st.builds(
    Series,
    instrument=st.sampled_from(["phq9", "gad7", "audit"]),
    label=st.text(min_size=1, max_size=20),
    max_score=st.integers(min_value=0, max_value=60),
    scores=st.lists(scores, max_size=40),
    baseline=st.none() | st.integers(min_value=0, max_value=60),
    reliable_change=st.none() | st.integers(min_value=1, max_value=30),
    caseness=st.none() | st.integers(min_value=0, max_value=70),
)


@given(series)
def test_any_series_is_well_formed_svg_whose_points_stay_in_the_plot_area(drawn: Series) -> None:
    root = ET.fromstring(svg(drawn))  # well-formed XML, whatever the labels hold
    assert root.tag == f"{NS}svg" and root.get("role") == "img"
    assert "style" not in svg(drawn)  # the CSP forbids style attributes: presentation attributes only
    circles = root.findall(f"{NS}circle")
    assert len(circles) == len(drawn.scores)
    for circle in circles:
        assert _inside(float(circle.get("cx", "nan")), float(circle.get("cy", "nan")))
    for line in root.findall(f"{NS}polyline"):
        for pair in line.get("points", "").split():
            x, y = pair.split(",")
            assert _inside(float(x), float(y))
    for rect in root.findall(f"{NS}rect"):
        top, height = float(rect.get("y", "nan")), float(rect.get("height", "nan"))
        assert PLOT[1] <= top and height >= 0 and top + height <= PLOT[3] + 0.01
    for element in root.iter():
        for name in ("y", "y1", "y2"):
            if element.get(name) is not None:
                assert 0 <= float(element.get(name, "nan")) <= HEIGHT


def test_the_band_is_the_baseline_give_or_take_the_reliable_change_and_the_cut_off_is_caseness() -> None:
    phq9 = Series("phq9", "PHQ-9", 27, [Score(T0, 16, "baseline"), Score(T0 + timedelta(days=14), 8,
                  "reliable improvement")], baseline=16, reliable_change=6, caseness=10)  # fmt: skip
    root = ET.fromstring(svg(phq9))
    [_, band] = root.findall(f"{NS}rect")  # the plot area, then the band
    height = PLOT[3] - PLOT[1]
    assert float(band.get("y", "")) == round(PLOT[3] - 22 / 27 * height, 2)  # 16 + 6
    assert float(band.get("y", "")) + float(band.get("height", "")) == round(PLOT[3] - 10 / 27 * height, 2)  # 16 - 6
    texts = [text.text for text in root.iter(f"{NS}text")]
    assert "caseness 10" in texts and "baseline 16 ± 6: no reliable change" in texts
    [title] = root.findall(f"{NS}title")
    assert title.text == "PHQ-9 scores over time" and root.get("aria-labelledby") == "chart-phq9-title chart-phq9-desc"
    desc = root.find(f"{NS}desc")
    assert desc is not None and desc.text == (
        "2 scores from 16 on 23 Nov 2026 to 8 on 07 Dec 2026 (highest possible 27). Baseline 16; a change of 6 "
        "points or more is reliable. Caseness from 10.")  # fmt: skip
    tips = [circle.findtext(f"{NS}title") for circle in root.findall(f"{NS}circle")]
    assert tips == ["23 Nov 2026: 16 (baseline)", "07 Dec 2026: 8 (reliable improvement)"]


def test_no_score_yet_and_no_threshold_draws_no_band_and_says_so() -> None:
    drawn = svg(Series("audit", "AUDIT", 40, []))
    assert "No score yet" in drawn and "<circle" not in drawn and "caseness" not in drawn
    assert len(re.findall("<rect", drawn)) == 1
