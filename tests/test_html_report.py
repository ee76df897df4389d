"""The HTML report: its content, escaping, links and charts, and how Chromium renders it."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from browser import dump_dom, screenshot
from report_samples import EVIL, EVIL_LAYER, EVIL_REASON, GOOD, LOSSY, sample_report

from qcheck.report.charts import BarRow, bar_chart, meter, nice_ticks, shorten
from qcheck.report.html import render, render_summary, write_report

SECTIONS = ("checks", "accuracy", "quantization", "layers", "tensors", "vela", "size", "artifacts")


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    """Three models (passing, failing on accuracy, failing on Vela) with artifacts in tmp_path/qcheck-out."""
    return sample_report(tmp_path / "qcheck-out")


def _sections(html: str, name: str) -> int:
    return html.count(f'data-section="{name}"')


def test_every_model_gets_every_section_and_the_overview_comes_first(report: dict[str, Any]) -> None:
    html = render(report)

    assert _sections(html, "overview") == 1
    assert html.index('data-section="overview"') < html.index('data-section="model"')
    assert _sections(html, "model") == 3
    for name in SECTIONS:
        assert _sections(html, name) == 3, name
    for chart in ("accuracy", "layers", "tensors", "size"):
        assert html.count(f'<svg class="chart" data-chart="{chart}"') == 3, chart
    assert "0.29 rounding only" in html and "0.7 suspicious" in html
    assert "saturation max 1.00%" in html


def test_checks_show_value_threshold_and_message(report: dict[str, Any]) -> None:
    html = render(report)

    lossy = html[html.index("lossy_net.keras</span>"):]
    row = re.search(r'<tr class="fail">\s*<td class="name">accuracy_drop.*?</tr>', lossy, re.DOTALL)
    assert row is not None
    assert "7.60%" in row.group(0) and "3.00%" in row.group(0)
    assert "accuracy_drop failed: 7.60%\n  try: look at &lt;layers&gt;" in row.group(0)
    assert "5.00 to 10.20 points" in lossy  # the drop's confidence interval
    assert '<span class="tag">ethos-u55-128</span>' in html  # a check's accelerator


def test_vela_shows_cpu_operators_with_reasons_and_budget_meters(report: dict[str, Any]) -> None:
    html = render(report)
    evil = html[html.index('id="model-1"'):html.index('id="model-2"')]

    assert "Op has &lt;b&gt;unsupported&lt;/b&gt; &#34;float&#34; tensors &amp; &lt;script&gt;" in evil
    assert "683.59 KiB" in evil and "of 512.00 KiB (134%)" in evil  # SRAM over its budget
    assert '<span class="fill over"' in evil
    assert "no budget set" in evil  # npu_weights has none in the sample suite


def test_every_name_is_escaped(report: dict[str, Any]) -> None:
    html = render(report)

    assert "<script" not in html.lower()
    assert "<img" not in html.lower()
    assert "<b>" not in html
    assert "&lt;script&gt;alert(&#39;model&#39;).keras" in html
    assert "conv&lt;img src=x onerror=alert(1)&gt;" in html
    assert EVIL not in html and EVIL_LAYER not in html and EVIL_REASON not in html


def test_the_page_is_self_contained(report: dict[str, Any]) -> None:
    html = render(report)

    assert not re.search(r"<(script|link|img|iframe|object)\b", html, re.IGNORECASE)
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}  # the SVG namespace is a name, not a fetch
    assert "default-src 'none'" in html  # and a CSP forbids fetching and scripts anyway


def test_artifact_links_are_relative_to_the_report(tmp_path: Path, report: dict[str, Any]) -> None:
    page = tmp_path / "reports" / "qcheck.html"
    write_report(page, report)
    html = page.read_text()

    assert 'href="../qcheck-out/good_cnn_quant.tflite"' in html
    assert 'href="../qcheck-out/lossy_net_quantization_info.json"' in html
    assert 'href="../qcheck-out/lossy_net_vela"' in html
    # An odd file name becomes a percent-encoded relative path, never markup or a scheme.
    assert 'href="../qcheck-out/%3Cscript%3Ealert%28%27model%27%29_quant.tflite"' in html


def test_sections_a_model_lacks_are_left_out(tmp_path: Path, report: dict[str, Any]) -> None:
    bare = {"schema_version": 1, "qcheck_version": "0", "passed": False, "models": [
        {"model": "m.tflite", "suite": "default", "passed": False, "checks": [
            {"name": "fully_quantized", "passed": False, "value": None, "threshold": 0, "unit": "count",
             "message": "fully_quantized could not be measured: m.tflite: not a TFLite flatbuffer", "variant": ""}]}]}
    html = render(bare)

    assert "not a TFLite flatbuffer" in html
    assert _sections(html, "checks") == 1 and _sections(html, "overview") == 0  # one model: no overview
    for name in ("accuracy", "quantization", "layers", "tensors", "vela", "size", "artifacts"):
        assert _sections(html, name) == 0, name


def test_same_report_renders_to_the_same_page(report: dict[str, Any]) -> None:
    assert render(report, generated="t") == render(report, generated="t")
    assert "generated" not in render(report)


def test_summary_fragment_for_pytest_html(report: dict[str, Any]) -> None:
    (evil,) = [m for m in report["models"] if m["model"] == EVIL]
    fragment = render_summary(evil)

    assert fragment.lstrip().startswith('<div class="qcheck-summary">')
    assert "&lt;script&gt;alert(&#39;model&#39;).keras" in fragment and "<script" not in fragment
    assert "FAIL" in fragment and "683.59 KiB" in fragment
    assert "<html" not in fragment


def test_template_ships_inside_the_package() -> None:
    template = resources.files("qcheck.report").joinpath("templates/report.html")
    assert template.is_file()


# -- chart geometry ----------------------------------------------------------------------------


def test_reference_lines_sit_at_their_values_and_huge_bars_are_clipped() -> None:
    rows = [BarRow("a", 0.1), BarRow("b", 0.7), BarRow("c", 50.0, "bad")]
    chart = bar_chart(rows, fmt=str, axis_label="steps", lines=[(0.29, "0.29", "muted"), (0.7, "0.7", "bad")], cap=3.0)

    scale = chart.plot_width / 3.0  # the axis ends at the cap
    lines = {line.label: line.x for line in chart.lines}
    assert lines["0.29"] == pytest.approx(chart.plot_left + 0.29 * scale, abs=0.1)
    assert lines["0.7"] == pytest.approx(chart.bars[1].x + chart.bars[1].width, abs=0.1)
    assert chart.bars[2].clipped and chart.bars[2].width == pytest.approx(chart.plot_width, abs=0.1)
    assert chart.bars[2].text == "50.0"
    assert {line.label_y for line in chart.lines} == {chart.plot_top - 6, chart.plot_top - 19}  # staggered


def test_negative_values_grow_left_of_zero() -> None:
    chart = bar_chart([BarRow("better", -0.01), BarRow("worse", 0.02)], fmt=str, axis_label="")
    better, worse = chart.bars
    assert better.x + better.width == pytest.approx(chart.zero_x)
    assert worse.x == pytest.approx(chart.zero_x)
    assert chart.plot_left < chart.zero_x < chart.plot_left + chart.plot_width


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0, 1, [0, 0.2, 0.4, 0.6, 0.8, 1.0]), (0, 3.1, [0, 1, 2, 3]), (-0.6, 1.4, [-0.5, 0, 0.5, 1.0]),
    (0, 0.045, [0, 0.01, 0.02, 0.03, 0.04]),
    (0, 220, [0, 50, 100, 150, 200]),
])
def test_nice_ticks_are_round_and_inside_the_axis(low: float, high: float, expected: list[float]) -> None:
    assert nice_ticks(low, high) == pytest.approx(expected)


def test_meter_against_budget() -> None:
    assert meter(256, 512) == meter(256.0, 512.0)
    assert (meter(256, 512).fill, meter(256, 512).budget_at, meter(256, 512).over) == (0.5, 1.0, False)
    over = meter(1024, 512)
    assert (over.fill, over.budget_at, over.over) == (1.0, 0.5, True)
    assert meter(5, None).budget_at is None


def test_long_names_keep_their_end() -> None:
    name = "functional_1/very_long_block_name/conv2d_17/BiasAdd;functional_1/other"
    short = shorten(name, 20)
    assert len(short) == 20 and short.startswith("\u2026") and name.endswith(short[1:])


# -- in a real browser -------------------------------------------------------------------------


def _pixels(png: Path) -> Any:
    from PIL import Image

    return Image.open(png).convert("RGB")


def test_chromium_renders_the_report_with_its_sections(tmp_path: Path, report: dict[str, Any]) -> None:
    page = tmp_path / "report.html"
    write_report(page, report, generated="2025-01-01 00:00:00 UTC")

    dom = dump_dom(page, tmp_path / "profile-dom")
    png = screenshot(page, tmp_path / "report.png", tmp_path / "profile-png")

    for name in ("overview", *SECTIONS):
        assert f'data-section="{name}"' in dom, name
    assert dom.count('<svg class="chart"') == 12
    assert "<script" not in dom.lower() and "<img" not in dom.lower()  # the parsed page holds no injected element
    assert "&lt;script&gt;alert('model').keras" in dom
    image = _pixels(png)
    assert image.size == (1280, 2000)
    colors = image.getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50, "the page is blank or flat"
    white = max(count for count, rgb in colors if rgb == (255, 255, 255))
    assert white < 0.97 * image.size[0] * image.size[1]
    # The overall verdict pill (top left) is drawn in the failure colour: the CSS applied.
    header = image.crop((0, 0, 200, 80)).getcolors(maxcolors=1 << 16)
    assert header is not None
    assert any(r > 180 and g < 70 and b < 80 for _, (r, g, b) in header), "no red FAIL pill in the header"


def test_chromium_renders_a_model_with_no_sections(tmp_path: Path) -> None:
    bare = {"schema_version": 1, "qcheck_version": "0", "passed": True, "models": [
        {"model": LOSSY, "suite": "default", "passed": True, "checks": [
            {"name": "size", "passed": True, "value": 1000.0, "threshold": None, "unit": "bytes",
             "message": "size passed", "variant": ""}]}]}
    page = tmp_path / "bare.html"
    write_report(page, bare)

    dom = dump_dom(page, tmp_path / "profile")
    assert 'data-section="checks"' in dom and "lossy_net.keras" in dom and GOOD not in dom
