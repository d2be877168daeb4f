"""baselines/report.py: one self-contained HTML file of tables, interval plots, heatmaps and
figures, written to disk, checked as text and opened in headless Chromium."""

from __future__ import annotations

import base64
import io
import math
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from browser import find_browser, requires_browser

from baselines.compare import Stats
from baselines.report import Report, format_cell, png_size, provenance

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<script>alert(1)</script>"
DATA_URI = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"')


def _ihdr(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG, read from its bytes alone (no PIL, no matplotlib): the
    signature, then every chunk walked with its CRC checked, IHDR first and IEND last, and the
    IDAT stream decompressed to exactly the rows IHDR announces (non-interlaced, 8 bits)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "no PNG signature"
    pos, chunks = 8, []
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert len(data) == length and zlib.crc32(kind + data) == crc, kind
        chunks.append((kind, data))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and interlace == 0 and width > 0 and height > 0
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    pixels = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))
    assert len(pixels) == height * (1 + width * channels)
    return width, height


def _tiny_png(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG written by hand: the bytes :meth:`Section.figure` embeds as given."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                              8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _report() -> Report:
    report = Report(f"bench {EVIL}", subtitle="suite: <b>dilemma</b>",
                    meta=provenance(["distsafe", "bench", EVIL]))
    summary = report.section("Summary", text=f"Means over 5 seeds.\n\nLabels may be {EVIL}.")
    summary.table(["policy", "toxicity", "welfare", "n"],
                  [["tit_for_tat", (0.25, 0.2, 0.3), 12.5, 5],
                   [EVIL, Stats(0.5, math.nan, math.nan, 1), math.nan, 1],
                   ["none", (math.nan, math.nan, math.nan), None, 0]],
                  caption=f"caption {EVIL}", id="summary")
    summary.table(["lever", "setting"], [{"lever": "tax", "setting": 0.1}, {"lever": EVIL}])
    summary.interval_plot("toxicity", ["tit_for_tat", EVIL, "$none$"],
                          [(0.25, 0.2, 0.3), Stats(0.5, math.nan, math.nan, 1),
                           (math.nan, math.nan, math.nan)], caption="toxicity per policy")
    sweep = report.section("Sweep: tax x audit", id="sweep")
    sweep.heatmap([[0.1, 0.2], [0.3, math.nan]], ["0", EVIL], ["0.1", "0.2"],
                  row_name="tax", col_name="audit p", title="toxicity", caption="2x2 grid")
    sweep.figure(_tiny_png(), caption=f"a hand-made PNG {EVIL}")
    return report


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    path = _report().write(tmp_path_factory.mktemp("report") / "sub" / "report.html")
    assert path.name == "report.html" and path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left
    return path


def test_the_file_is_self_contained(page):
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in text
    for ref in ("http://", "https://", 'src="/', "href=\"/", "url(", "@import", "<link",
                "<script"):
        assert ref not in text, ref
    srcs = re.findall(r'src="([^"]*)"', text)
    images = DATA_URI.findall(text)
    assert len(srcs) == len(images) == text.count("<img") == 3  # interval, heatmap, figure
    sizes = []
    for data, alt in images:
        png = base64.b64decode(data, validate=True)
        width, height = _ihdr(png)
        assert (width, height) == png_size(png) and alt
        sizes.append((width, height))
        # the <img> declares the PNG's own size
        assert f'width="{width}" height="{height}"' in text
    assert sizes[2] == (3, 2)                                 # the figure, as given
    assert all(w >= 300 and h >= 150 for w, h in sizes[:2])   # the two matplotlib plots


def test_text_is_escaped_never_injected(page):
    text = page.read_text(encoding="utf-8")
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert EVIL not in text and "<b>dilemma" not in text
    # title, meta command, section text, table cell, caption, alt texts, nav: all escaped
    assert text.count(escaped) >= 8
    assert f"<title>bench {escaped}</title>" in text
    assert f"<td>distsafe bench {escaped}</td>" in text
    assert f'<td class="text">{escaped}</td>' in text


def test_numbers_intervals_and_nan(page):
    text = page.read_text(encoding="utf-8")
    table = re.search(r'<table class="data" id="summary">.*?</table>', text).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows[1:]]
    assert cells == [["tit_for_tat", "0.250 [0.200, 0.300]", "12.50", "5"],
                     ["&lt;script&gt;alert(1)&lt;/script&gt;", "0.500 [–, –]", "–", "1"],
                     ["none", "–", "–", "0"]]
    assert '<td class="missing">–</td>' in table and "nan" not in table.lower()
    assert '<table class="data" id="table-1">' in text      # the second table: numbered
    second = re.search(r'id="table-1">.*?</table>', text).group(0)
    assert re.findall(r"<td[^>]*>(.*?)</td>", second) == [
        "tax", "0.100", "&lt;script&gt;alert(1)&lt;/script&gt;", "–"]  # rows given as dicts
    assert format_cell(np.float32(2.5)) == "2.500" and format_cell(np.int64(7)) == "7"
    # alt text carries the plotted numbers
    alts = [alt for _, alt in DATA_URI.findall(text)]
    assert alts[0].startswith("interval plot of toxicity: tit_for_tat 0.250 [0.200, 0.300]")
    assert "audit p" in alts[1] and "0.300" in alts[1] and "–" in alts[1]


def test_bad_input_is_refused():
    s = Report("r").section("s")
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        s.table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="not a PNG"):
        s.figure(b"GIF89a...")
    with pytest.raises(ValueError, match="one \\(mean, lo, hi\\) per label"):
        s.interval_plot("m", ["a", "b"], [(1, 0, 2)])
    with pytest.raises(ValueError, match="2 rows of 2 cells"):
        s.heatmap([[1, 2]], ["a", "b"], ["c", "d"])
    s.table(["a"], [], id="t")
    for bad in ("t", '"><script>', "1abc"):
        with pytest.raises(ValueError, match="id"):
            s.table(["a"], [], id=bad)


def test_the_module_imports_without_matplotlib(tmp_path):
    # a fresh process in which `import matplotlib` fails: tables still work, a plot names
    # the extra to install
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from baselines.report import Report\n"
        "r = Report('r'); s = r.section('s'); s.table(['a'], [[1.5]])\n"
        "assert '1.500' in r.html()\n"
        "try:\n"
        "    s.interval_plot('m', ['a'], [(1, 0, 2)])\n"
        "except ImportError as e:\n"
        "    print(e)\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == \
        'plots in a report need matplotlib: pip install "distsafe[analysis]"'


@requires_browser
def test_the_report_opens_in_headless_chromium(page, tmp_path):
    browser = find_browser()
    assert browser is not None, "DISTSAFE_REQUIRE_BROWSER is set but Chromium is missing"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    assert "<title>bench &lt;script&gt;alert(1)&lt;/script&gt;</title>" in rendered
    assert '<table class="data" id="summary">' in rendered
    assert '<table class="data" id="table-1">' in rendered
    assert rendered.count("<img ") == 3 and rendered.count('src="data:image/png;base64,') == 3
    assert "<script" not in rendered                # nothing was injected into the DOM
    shot = tmp_path / "page.png"
    res = subprocess.run([browser, *flags, "--window-size=1200,1600",
                          f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    png = shot.read_bytes()
    assert _ihdr(png) == (1200, 1600) and len(png) > 20_000
    import matplotlib.image as mpimg

    pixels = mpimg.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (1600, 1200)
    dark = (pixels[..., :3].mean(axis=2) < 0.5).mean()      # text and plots on a light page
    assert 0.002 < dark < 0.5
    # the images were decoded and drawn, not broken-image icons: the heatmap's darkest and
    # brightest viridis cells, the interval plot's blue and the hand-made PNG's red are
    # on the page, each over an area
    rgb = pixels[..., :3]
    for color, area in (((0.267, 0.005, 0.329), 2000), ((0.993, 0.906, 0.144), 2000),
                        ((0.122, 0.467, 0.706), 50), ((200 / 255, 30 / 255, 30 / 255), 6)):
        near = (np.abs(rgb - np.array(color)).max(axis=2) < 0.03).sum()
        assert near >= area, (color, near)
