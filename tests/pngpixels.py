"""Read a PNG's pixels without third-party packages, and a headless Chromium to make one.

Enough of PNG for the screenshots headless Chromium writes (8-bit RGB or
RGBA, not interlaced, all five row filters), so tests can check what a page
looks like: where a colour is drawn and how much of it.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def chromium() -> str | None:
    """The headless Chromium executable, or None (scripts/ensure-chromium.sh installs it)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)


def run_chromium(args: list[str], work: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run Chromium with the offline flags, a fresh profile and HOME under *work*."""
    exe = chromium()
    assert exe is not None
    home = work / "chromium-home"
    home.mkdir(exist_ok=True)
    return subprocess.run(
        [exe, *CHROMIUM_FLAGS, f"--user-data-dir={work / 'chromium-profile'}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HOME": str(home)},
    )


def screenshot(page: Path, png: Path, *, width: int = 1000, height: int = 1500) -> Image:
    """Render *page* in headless Chromium at *width* x *height* CSS pixels; the decoded PNG."""
    proc = run_chromium([f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()], png.parent)
    assert png.exists(), proc.stderr[-2000:]
    return Image.read(png)


class Image:
    """Decoded pixels: ``rows[y]`` holds ``width * channels`` bytes (RGB or RGBA)."""

    def __init__(self, width: int, height: int, channels: int, rows: list[bytearray]) -> None:
        self.width, self.height, self.channels, self.rows = width, height, channels, rows

    @classmethod
    def read(cls, path: Path) -> Image:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
        pos, idat = 8, b""
        width = height = channels = 0
        while pos < len(data):
            (length,) = struct.unpack(">I", data[pos : pos + 4])
            kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
            pos += 12 + length
            if kind == b"IHDR":
                width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
                assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
                channels = 3 if color == 2 else 4
            elif kind == b"IDAT":
                idat += body
        raw = zlib.decompress(idat)
        stride = width * channels
        rows: list[bytearray] = []
        prev = bytearray(stride)
        for y in range(height):
            start = y * (stride + 1)
            kind_byte, row = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
            _unfilter(kind_byte, row, prev, channels)
            rows.append(row)
            prev = row
        return cls(width, height, channels, rows)

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = x * self.channels
        r, g, b = self.rows[y][i : i + 3]
        return r, g, b

    def where(self, rgb: tuple[int, int, int], *, tolerance: int = 12) -> list[tuple[int, int]]:
        """Every (x, y) whose colour is within *tolerance* of *rgb* on each channel."""
        out = []
        r0, g0, b0 = rgb
        c = self.channels
        for y, row in enumerate(self.rows):
            for x in range(self.width):
                i = x * c
                if (
                    abs(row[i] - r0) <= tolerance
                    and abs(row[i + 1] - g0) <= tolerance
                    and abs(row[i + 2] - b0) <= tolerance
                ):
                    out.append((x, y))
        return out

    def blended(
        self, rgb: tuple[int, int, int], background: tuple[int, int, int], *, at_least: float = 0.35
    ) -> list[tuple[int, int]]:
        """Every (x, y) whose colour is *rgb* painted over *background* with coverage >= *at_least*.

        Anti-aliasing paints a thin line that falls between pixel rows as two rows of partial coverage,
        each too pale for :meth:`where`; each channel then sits the same fraction of the way from the
        background to the colour, which is what this checks (to within 0.12)."""
        out = []
        c = self.channels
        spans = [fg - bg for fg, bg in zip(rgb, background, strict=True)]
        for y, row in enumerate(self.rows):
            for x in range(self.width):
                i = x * c
                fractions = [(row[i + k] - background[k]) / spans[k] for k in range(3) if abs(spans[k]) >= 40]
                if fractions and min(fractions) >= at_least and max(fractions) - min(fractions) <= 0.12:
                    out.append((x, y))
        return out

    def dark_rows(self, *, below: int = 0, threshold: int = 110) -> list[int]:
        """The y of every pixel row from *below* down holding a text-dark pixel (each channel < threshold)."""
        c = self.channels
        out = []
        for y in range(below, self.height):
            row = self.rows[y]
            if any(
                row[i] < threshold and row[i + 1] < threshold and row[i + 2] < threshold
                for i in range(0, len(row), c)
            ):
                out.append(y)
        return out


def bbox(points: list[tuple[int, int]]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of *points*."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def filled_box(points: list[tuple[int, int]], *, min_per_row: int) -> tuple[int, int, int, int]:
    """The box of the rows holding at least *min_per_row* of *points*: a filled area, not stray pixels."""
    per_row: dict[int, list[int]] = {}
    for x, y in points:
        per_row.setdefault(y, []).append(x)
    rows = [y for y, xs in per_row.items() if len(xs) >= min_per_row]
    assert rows, f"no row holds {min_per_row} of the {len(points)} points"
    xs = [x for y in rows for x in per_row[y]]
    return min(xs), min(rows), max(xs), max(rows)


def bands(ys: list[int]) -> int:
    """How many runs of consecutive y values (lines of text, table rows) *ys* holds."""
    return sum(1 for i, y in enumerate(ys) if i == 0 or y != ys[i - 1] + 1)


def _unfilter(kind: int, row: bytearray, prev: bytearray, bpp: int) -> None:
    n = len(row)
    if kind == 0:
        return
    if kind == 1:  # Sub
        for i in range(bpp, n):
            row[i] = (row[i] + row[i - bpp]) & 0xFF
    elif kind == 2:  # Up
        row[:] = bytes((a + b) & 0xFF for a, b in zip(row, prev, strict=True))
    elif kind == 3:  # Average
        for i in range(n):
            left = row[i - bpp] if i >= bpp else 0
            row[i] = (row[i] + ((left + prev[i]) >> 1)) & 0xFF
    elif kind == 4:  # Paeth
        for i in range(n):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            row[i] = (row[i] + pred) & 0xFF
    else:  # pragma: no cover - not a PNG filter
        raise ValueError(f"unknown PNG row filter {kind}")
