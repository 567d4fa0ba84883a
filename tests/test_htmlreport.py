"""The self-contained HTML report: well-formed, offline, SVG timeline with peak and marks, tables."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import hivemem
from hivemem._htmlreport import _MAX_POINTS, render, svg_timeline
from hivemem._leaks import LeakReport
from hivemem._profiler import LeakWatch, Overhead, Peak, ProfileReport, SiteDiff, Timeline, TopSites

SECRET = "hunter2-TOP-SECRET"
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)


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


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (/usr/bin/chromium)")
def test_renders_in_headless_chromium(tmp_path: Path) -> None:
    """A real browser loads the page offline and its DOM holds the SVG, the tables and the peak."""
    path = tmp_path / "report.html"
    sample_report().to_html(path, events=[2.0], leaks=[LeakReport(per_run=[0] * 3, per_run_blocks=[0] * 3)])
    assert CHROMIUM is not None
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(home)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert "<svg" in dom and "series-rss" in dom and 'class="peak"' in dom
    assert "Top allocation sites" in dom and "find_leaks" in dom
    assert "160.0 MiB" in dom


def test_chromium_screenshot_if_available(tmp_path: Path) -> None:
    """Where Chromium exists, a screenshot of the page is a non-trivial PNG (the page paints)."""
    if CHROMIUM is None or shutil.which(CHROMIUM) is None:
        pytest.skip("headless Chromium is not installed (/usr/bin/chromium)")
    path = tmp_path / "report.html"
    sample_report().to_html(path)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1000,900",
            path.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
        check=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
