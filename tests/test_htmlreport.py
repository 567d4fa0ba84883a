"""The self-contained HTML report: well-formed, offline, SVG timeline with peak and marks, tables."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import hivemem
from hivemem._profile.html import _MAX_POINTS, render, svg_timeline
from hivemem._profile.leaks import LeakReport
from hivemem._profile.profiler import LeakWatch, Overhead, Peak, ProfileReport, SiteDiff, Timeline, TopSites

from .conftest import SRC
from .pngpixels import Image, bands, bbox, chromium, filled_box, run_chromium, screenshot

SECRET = "hunter2-TOP-SECRET"


class Page(HTMLParser):
    """Collects tags and checks that every non-void element is closed in order."""

    VOID = frozenset({"br", "hr", "img", "meta", "input", "link", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-3:]}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert not page.errors, page.errors
    assert not page.stack, f"unclosed: {page.stack}"
    return page


def sample_report(n: int = 200) -> ProfileReport:
    times = [i * 0.1 for i in range(n)]
    rss = [(100 << 20) + (i % 50) * (1 << 20) for i in range(n)]
    traced = [(10 << 20) + i * 4096 for i in range(n)]
    tl = Timeline(
        times=times,
        rss=rss,
        traced=traced,
        blocks=[1000 + i for i in range(n)],
        gc=[(i, 0, 0) for i in range(n)],
        marks=[(1.0, "snapshot start"), (5.0, "optimize: +12.0 MiB"), (9.0, 'governor level: <b>"high"</b>')],
        interval=0.1,
    )
    return ProfileReport(
        timeline=tl,
        peak=Peak(
            rss=160 << 20, rss_source="kernel VmHWM since start", traced=12 << 20, sampled_rss=149 << 20
        ),
        leak=LeakWatch(times, traced, metric="traced"),
        overhead=Overhead(tracemalloc_memory=3 << 20, sampler_cpu=0.01, wall=20.0, samples=n, storage=n * 64),
        top=TopSites(
            [("app/cache.py:12", 8 << 20, 1000), ("app/<io>.py:3", 1 << 20, 10)],
            by="lineno",
            label="stop",
            total=10 << 20,
        ),
        growth=SiteDiff(
            [("app/cache.py:12", 2 << 20, 100, 8 << 20)], a="start", b="stop", by="lineno", total_diff=2 << 20
        ),
        started=1_700_000_000.0,
    )


def test_page_is_well_formed_and_complete(tmp_path: Path) -> None:
    """The page parses with balanced tags; it holds the timeline, peak, marks, events, leak, site tables."""
    report = sample_report()
    leak = LeakReport(per_run=[133] * 5, per_run_blocks=[1] * 5, function="app.handler")
    path = tmp_path / "report.html"
    html = report.to_html(path, events=[3.0, 7.5], leaks=[leak])
    assert path.read_text(encoding="utf-8") == html
    assert html.startswith("<!DOCTYPE html>")
    page = parse(html)
    tags = [t for t, _ in page.tags]
    assert tags.count("svg") == 1
    polylines = {a.get("class") for t, a in page.tags if t == "polyline"}
    assert polylines == {"series-rss", "series-traced"}
    assert sum(1 for t, a in page.tags if t == "line" and a.get("class") == "peak") == 1
    assert sum(1 for t, a in page.tags if t == "line" and a.get("class") == "mark") == 3
    assert sum(1 for t, a in page.tags if t == "line" and a.get("class") == "event") == 2
    text = " ".join(page.text)
    for expected in (
        "app.handler",
        "LEAKING",
        "app/cache.py:12",
        "Top allocation sites",
        "What grew",
        "Leak watch",
    ):
        assert expected in text, expected
    assert "160.0 MiB" in text  # the exact peak
    assert '<b>"high"</b>' not in html  # mark labels are escaped, never markup


def test_page_is_offline() -> None:
    """No script, stylesheet link, image, font or URL fetch: the page needs no network."""
    html = render(sample_report(), events=[1.0])
    page = parse(html)
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for name, value in attrs.items():
            assert name not in ("src", "href"), (tag, name)
            if value and "://" in value:
                assert name == "xmlns" and value == "http://www.w3.org/2000/svg", (tag, name, value)
    assert "@import" not in html and "url(" not in html


def test_peak_line_position_is_exact() -> None:
    """The peak line sits where the peak value maps on the y axis (top of the plot = 1.05 x the maximum)."""
    report = sample_report()
    svg = svg_timeline(report.timeline, peak=200 << 20)
    m = re.search(r"class='peak' x1='[\d.]+' y1='([\d.]+)'", svg)
    assert m is not None
    top, plot_h = (200 << 20) * 1.05, 260 - 16 - 40
    assert float(m.group(1)) == pytest.approx(16 + plot_h - (200 << 20) / top * plot_h, abs=0.06)


def test_long_timelines_are_thinned_keeping_peaks() -> None:
    """A 50k-sample timeline draws at most ~_MAX_POINTS points per series and keeps the spike."""
    n = 50_000
    rss = [100 << 20] * n
    rss[31_337] = 900 << 20
    tl = Timeline(times=[i * 0.01 for i in range(n)], rss=rss)
    svg = svg_timeline(tl)
    points = re.search(r"class='series-rss'[^>]*points='([^']*)'", svg)
    assert points is not None
    coords = points.group(1).split()
    assert len(coords) <= _MAX_POINTS + 2
    ys = [float(c.split(",")[1]) for c in coords]
    assert min(ys) == pytest.approx(16 + 204 - (900 << 20) / ((900 << 20) * 1.05) * 204, abs=0.06)


def test_empty_timeline() -> None:
    """A timeline without samples renders a note, not a broken SVG."""
    assert "no samples" in svg_timeline(Timeline(times=[], rss=[]))


def test_real_profile_has_no_secrets() -> None:
    """A profile of code holding secret strings renders an HTML page and JSON without them."""
    with hivemem.Profiler(trace=True, interval=None) as prof:
        held = [SECRET + str(i) * 100 for i in range(3000)]
        prof.snapshot("mid")
    report = prof.report()
    leak = hivemem.find_leaks(lambda: held.append(SECRET * 3), repeat=3, warmup=1, types=False)
    html = report.to_html(leaks=[leak], events=[0.0])
    parse(html)
    for text in (html, report.to_json(), leak.to_json()):
        assert SECRET not in text and "hunter2" not in text


def test_every_report_has_to_json() -> None:
    """Every result type of the profiler exposes to_json() with valid JSON."""
    import json

    report = sample_report(20)
    for part in (
        report,
        report.timeline,
        report.peak,
        report.leak,
        report.overhead,
        report.top,
        report.growth,
    ):
        assert isinstance(json.loads(part.to_json()), dict)  # type: ignore[union-attr]


needs_chromium = pytest.mark.skipif(
    chromium() is None,
    reason="headless Chromium is not installed (make test runs scripts/ensure-chromium.sh)",
)

# The colours the pages draw with (src/hivemem/_profile/html.py, src/hivemem/_profile/render.py).
RSS_BLUE, TRACED_ORANGE, PEAK_RED = (0x15, 0x65, 0xC0), (0xEF, 0x6C, 0x00), (0xC6, 0x28, 0x28)
TH_GREY, SUMMARY_BLUE, SUMMARY_GREEN = (0xF5, 0xF5, 0xF5), (0xE3, 0xF2, 0xFD), (0xE8, 0xF5, 0xE9)
PLOT_GREY = (0xFA, 0xFA, 0xFA)


def _assert_timeline_drawn(img: Image) -> tuple[int, int, int, int]:
    """Inside the plot's box (its #fafafa background), the RSS series is a line across the plot and the
    peak a dashed horizontal line; returns the box."""
    plot = filled_box(img.where(PLOT_GREY, tolerance=1), min_per_row=300)
    left, top, right, bottom = plot
    assert right - left >= 600 and bottom - top >= 150, f"the plot's box {plot}"

    def inside(points: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(x, y) for x, y in points if left <= x <= right and top <= y <= bottom]

    # anti-aliasing shades a flat stretch of the line, and one that falls between two pixel rows (y=31.0
    # with a 1.5 px stroke) is two pale rows: count pixels of the line's colour blended over the plot's
    # background, at least one per column over half the plot's width
    blue = inside(img.blended(RSS_BLUE, PLOT_GREY))
    assert len(blue) >= 0.5 * (right - left), f"{len(blue)} pixels of the RSS line's colour in the plot"
    b_left, b_top, b_right, b_bottom = bbox(blue)
    assert b_right - b_left >= 0.6 * (right - left) and b_bottom - b_top >= 15, bbox(blue)  # spans, varies
    # the peak line is 1 px and anti-aliased: a wider tolerance; it lies above the highest sample
    red = [p for p in inside(img.where(PEAK_RED, tolerance=45)) if p[1] <= b_top + 2]
    assert len(red) >= 100, f"{len(red)} pixels of the peak line"
    r_left, r_top, r_right, r_bottom = bbox(red)
    assert r_right - r_left >= 0.6 * (right - left) and r_bottom - r_top <= 3, bbox(red)
    return plot


def _assert_tables_below(img: Image, y: int, at_least: int) -> None:
    """Table headers (grey) and rows of text are painted below *y*."""
    heads = [p for p in img.where(TH_GREY, tolerance=3) if p[1] > y]
    assert len(heads) >= 2000, f"{len(heads)} pixels of table headers below y={y}"
    assert bands(sorted({p[1] for p in heads})) >= at_least, "table header rows"
    assert bands(img.dark_rows(below=y)) >= 6, "rows of text in the tables"


@needs_chromium
def test_profile_page_in_headless_chromium(tmp_path: Path) -> None:
    """Chromium paints the profile page offline: the summary first, the timeline's lines, then the tables."""
    page = tmp_path / "report.html"
    sample_report().to_html(page, events=[2.0], leaks=[LeakReport(per_run=[0] * 3, per_run_blocks=[0] * 3)])
    img = screenshot(page, tmp_path / "shot.png")
    summary = [p for p in img.where(SUMMARY_BLUE, tolerance=3) if p[1] < 200]
    assert len(summary) >= 5000, "the summary band at the top"
    _, top, _, bottom = _assert_timeline_drawn(img)
    assert bbox(summary)[3] < top
    assert img.where(TRACED_ORANGE), "the traced series"
    _assert_tables_below(img, bottom, at_least=2)


@needs_chromium
def test_dom_in_headless_chromium(tmp_path: Path) -> None:
    """A real browser loads the page offline and its DOM holds the SVG, the tables, the peak and summary."""
    path = tmp_path / "report.html"
    sample_report().to_html(path, events=[2.0], leaks=[LeakReport(per_run=[0] * 3, per_run_blocks=[0] * 3)])
    proc = run_chromium(["--dump-dom", path.as_uri()], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<svg" in dom and "series-rss" in dom and 'class="peak"' in dom
    assert "Top allocation sites" in dom and "find_leaks" in dom
    assert "160.0 MiB" in dom and 'class="hivemem-summary' in dom


@needs_chromium
def test_run_page_in_headless_chromium(tmp_path: Path) -> None:
    """hivemem run --profile --govern --report x.html: Chromium paints its summary, timeline and tables."""
    script = tmp_path / "job.py"
    script.write_text(
        "import time\nrows = [bytearray(1000) for _ in range(20_000)]\ntime.sleep(0.3)\ndel rows\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hivemem",
            "run",
            "--profile",
            "--govern",
            "--report",
            "run.html",
            str(script),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    img = screenshot(tmp_path / "run.html", tmp_path / "run.png", height=2200)
    summary = [p for p in img.where(SUMMARY_GREEN, tolerance=3) if p[1] < 250]
    assert len(summary) >= 5000, "the green summary band at the top"
    _assert_timeline_drawn(img)
    _assert_tables_below(img, 0, at_least=3)  # the run's figures, the sites at the peak, the events


@needs_chromium
def test_pytest_report_in_headless_chromium(tmp_path: Path) -> None:
    """The --hivemem-report page of a pytest run paints its table: one row of text per test at least."""
    (tmp_path / "test_a.py").write_text(
        "import pytest\n"
        "@pytest.mark.memory_limit('200MB')\n"
        "def test_small():\n    assert len(bytearray(1000)) == 1000\n"
        "def test_other():\n    assert sum(range(10)) == 45\n"
        "def test_third():\n    assert 'x' * 3 == 'xxx'\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--hivemem-report=report.html",
            "test_a.py",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    img = screenshot(tmp_path / "report.html", tmp_path / "report.png", height=900)
    text = img.dark_rows()
    assert bands(text) >= 1 + 1 + 3, "a title, a header row and three test rows of text"
    assert img.height == 900 and len(text) < img.height / 2  # text lines, not a black page
