"""One self-contained HTML file of tables, interval plots, heatmaps and figures.

A :class:`Report` has a title, an optional subtitle, a meta block (what made it: package
version, git commit, date, command; :func:`provenance` gathers those) and ordered sections;
a :class:`Section` has a heading, optional text and items, in the order they were added:

==================================  ==========================================================
:meth:`Section.table`               column names and rows. Numbers are formatted
                                    (:func:`format_number`), nan is shown as "–", and a cell
                                    that is an interval — a ``(mean, lo, hi)`` tuple or
                                    anything with ``mean``, ``lo`` and ``hi`` attributes, such
                                    as :class:`baselines.compare.Stats` — as ``mean [lo, hi]``
:meth:`Section.interval_plot`       one metric: a mean and 95 % interval per label, drawn as
                                    a horizontal error-bar chart
:meth:`Section.heatmap`             a 2-D grid of values (or intervals: their means are
                                    coloured) with row and column labels, annotated cells
:meth:`Section.figure`              any PNG, as given
==================================  ==========================================================

The file loads nothing: CSS is inline, there are no scripts and no fonts, and every image is
a PNG embedded as a ``data:image/png;base64,...`` URI, so it opens offline and can be
mailed or archived as one file. All text (titles, labels, cells, captions, meta) is
HTML-escaped: a label cannot inject markup. Every table has an ``id`` (given, or
``table-1``, ``table-2``, ... in the order added) and the class ``data``; every image has
alt text (for the plots: the numbers they show).

Only the plots need matplotlib (the ``analysis`` extra: ``pip install "distsafe[analysis]"``);
it is imported when a plot is added, never at import. The plots are drawn when they are
added (Agg, no pyplot state), so :meth:`Report.html` is cheap and can be called again.

Example:
    >>> import math, pathlib, tempfile
    >>> report = Report("bench: dilemma", meta={"command": "distsafe bench <suite>"})
    >>> s = report.section("Summary", text="Means over 5 seeds, 95 % t-intervals.")
    >>> table = s.table(["policy", "toxicity", "welfare"],
    ...                 [["tit_for_tat", (0.25, 0.2, 0.3), 12.5],
    ...                  ["<script>x</script>", (0.5, math.nan, math.nan), math.nan]])
    >>> table.id
    'table-1'
    >>> page = report.html()
    >>> "0.250 [0.200, 0.300]" in page, "0.500 [–, –]" in page, "<script>" in page
    (True, True, False)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = report.write(pathlib.Path(d) / "report.html")
    ...     path.read_text(encoding="utf-8") == page
    True

With matplotlib, ``s.interval_plot("toxicity", ["a", "b"], [(0.2, 0.1, 0.3),
(0.4, 0.35, 0.45)])`` and ``s.heatmap([[1, 2], [3, 4]], ["tax 0", "tax 0.1"], ["p 0.1",
"p 0.2"], row_name="tax", col_name="audit p")`` add the two plots.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import platform
import re
import secrets
import struct
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

__all__ = ["Figure", "Interval", "Report", "Section", "Table", "format_cell",
           "format_number", "png_size", "provenance"]

MISSING = "–"  # en dash: nan, None and undefined interval ends
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_INSTALL_HINT = 'pip install "distsafe[analysis]"'
_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1.5em;
color:#222;background:#fff;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}.subtitle{color:#444;margin-top:0}
h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em;padding-bottom:.2em}
table.meta{font-size:.85em;color:#444;border-collapse:collapse;margin:.6em 0 1em}
table.meta th{text-align:left;font-weight:600;padding:.1em 1em .1em 0;vertical-align:top}
table.meta td{font-family:ui-monospace,monospace;word-break:break-all}
nav{font-size:.9em;margin:1em 0}nav ol{margin:.2em 0;padding-left:1.6em}
.wrap{overflow-x:auto;margin:.8em 0 1.2em}
table.data{border-collapse:collapse;font-size:.9em;font-variant-numeric:tabular-nums}
table.data caption{caption-side:top;text-align:left;color:#444;padding-bottom:.3em}
table.data th,table.data td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
table.data th{background:#f0f0f0}table.data tbody tr:nth-child(even){background:#fafafa}
table.data td.num{text-align:right;white-space:nowrap}
table.data td.missing{color:#999;text-align:center}
figure{margin:1em 0 1.5em}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#444;font-size:.9em;margin-top:.3em}
footer{margin-top:3em;color:#888;font-size:.8em}
"""


class Interval(NamedTuple):
    """A mean and its interval: shown as ``mean [lo, hi]``."""

    mean: float
    lo: float
    hi: float


# --------------------------------------------------------------------------- formatting
def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_))


def as_interval(x: Any) -> Interval | None:
    """``x`` as an :class:`Interval`: a ``(mean, lo, hi)`` tuple of numbers, or anything with
    numeric ``mean``, ``lo`` and ``hi`` attributes; None for anything else.

    Example:
        >>> as_interval((1, 0, 2)), as_interval(3.0), as_interval(("a", "b", "c"))
        (Interval(mean=1.0, lo=0.0, hi=2.0), None, None)
    """
    if all(hasattr(x, a) for a in ("mean", "lo", "hi")):
        parts = (x.mean, x.lo, x.hi)
    elif isinstance(x, (tuple, list)) and len(x) == 3:
        parts = tuple(x)
    else:
        return None
    if not all(_is_number(p) or p is None for p in parts):
        return None
    return Interval(*(math.nan if p is None else float(p) for p in parts))


def format_number(x: Any) -> str:
    """A number for a table: ints as they are; floats with 3 to 0 decimals by magnitude
    (3 below 10, 2 below 100, 1 below 1000), scientific when very large or very small; nan
    and None as "–".

    Example:
        >>> [format_number(v) for v in (3, 0.12345, 12.345, 123.45, 12345.6, -0.0001,
        ...                             2.5e7, float("nan"), float("-inf"), None)]
        ['3', '0.123', '12.35', '123.5', '12346', '-1.00e-04', '2.50e+07', '–', '-inf', '–']
    """
    if x is None:
        return MISSING
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if math.isnan(x):
        return MISSING
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    a = abs(x)
    if a >= 1e6 or 0 < a < 1e-3:
        return f"{x:.2e}"
    digits = 0 if a >= 1000 else 1 if a >= 100 else 2 if a >= 10 else 3
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def format_cell(x: Any) -> str:
    """A table cell as text (not yet escaped): an interval as ``mean [lo, hi]`` (just "–"
    when its mean is nan), a number by :func:`format_number`, anything else by ``str``.

    Example:
        >>> format_cell((0.5, 0.25, 0.75)), format_cell((1.0, float("nan"), float("nan")))
        ('0.500 [0.250, 0.750]', '1.000 [–, –]')
        >>> format_cell((float("nan"),) * 3), format_cell("<b>"), format_cell(None)
        ('–', '<b>', '–')
    """
    iv = as_interval(x)
    if iv is not None:
        if math.isnan(iv.mean):
            return MISSING
        return f"{format_number(iv.mean)} [{format_number(iv.lo)}, {format_number(iv.hi)}]"
    if x is None or _is_number(x) or isinstance(x, (bool, np.bool_)):
        return format_number(x)
    return str(x)


def _cell_class(x: Any) -> str:
    text = format_cell(x)
    if text == MISSING:
        return "missing"
    return "num" if as_interval(x) is not None or _is_number(x) else "text"


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a PNG, from its IHDR chunk.

    Raises:
        ValueError: ``data`` is not a PNG.

    Example:
        >>> png_size(PNG_SIGNATURE + struct.pack(">I4sII", 13, b"IHDR", 640, 480))
        (640, 480)
    """
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG (no PNG signature followed by an IHDR chunk)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --------------------------------------------------------------------------- items
@dataclass
class Table:
    """A table: ``columns`` and ``rows`` of cells (see :func:`format_cell`)."""

    id: str
    columns: list[str]
    rows: list[list[Any]]
    caption: str | None = None

    def html(self) -> str:
        head = "".join(f'<th scope="col">{_esc(c)}</th>' for c in self.columns)
        body = []
        for row in self.rows:
            cells = "".join(f'<td class="{_cell_class(x)}">{_esc(format_cell(x))}</td>'
                            for x in row)
            body.append(f"<tr>{cells}</tr>")
        caption = f"<caption>{_esc(self.caption)}</caption>" if self.caption else ""
        return (f'<div class="wrap"><table class="data" id="{self.id}">{caption}'
                f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


@dataclass
class Figure:
    """An embedded PNG: ``kind`` is ``"figure"``, ``"interval-plot"`` or ``"heatmap"``."""

    id: str
    png: bytes
    alt: str
    caption: str | None = None
    kind: str = "figure"

    def html(self) -> str:
        width, height = png_size(self.png)
        data = base64.b64encode(self.png).decode("ascii")
        caption = f"<figcaption>{_esc(self.caption)}</figcaption>" if self.caption else ""
        return (f'<figure class="{self.kind}" id="{self.id}"><img src="data:image/png;base64,'
                f'{data}" alt="{_esc(self.alt)}" width="{width}" height="{height}">'
                f"{caption}</figure>")


@dataclass
class Section:
    """A heading, optional text (blank lines separate paragraphs) and items, in order.

    Made by :meth:`Report.section`; its methods add an item and return it.
    """

    heading: str
    text: str | None
    id: str
    report: Report = field(repr=False)
    items: list[Table | Figure] = field(default_factory=list)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any] | Mapping[str, Any]],
              caption: str | None = None, *, id: str | None = None) -> Table:
        """Add a table. A row is a sequence of cells, one per column, or a mapping from
        column name to cell (a missing column shows "–").

        Raises:
            ValueError: A row with the wrong number of cells, or a bad or repeated ``id``.
        """
        columns = [str(c) for c in columns]
        out = []
        for i, row in enumerate(rows):
            if isinstance(row, Mapping):
                cells = [row.get(c) for c in columns]
            else:
                cells = list(row)
                if len(cells) != len(columns):
                    raise ValueError(f"table row {i} has {len(cells)} cells for "
                                     f"{len(columns)} columns")
            out.append(cells)
        item = Table(self.report._new_id(id, "table"), columns, out, caption)
        self.items.append(item)
        return item

    def figure(self, png: bytes, caption: str | None = None, *, alt: str | None = None,
               id: str | None = None) -> Figure:
        """Add a PNG as it is (``alt`` defaults to the caption).

        Raises:
            ValueError: ``png`` is not a PNG.
        """
        png = bytes(png)
        png_size(png)
        item = Figure(self.report._new_id(id, "figure"), png,
                      alt if alt is not None else (caption or "figure"), caption)
        self.items.append(item)
        return item

    def interval_plot(self, metric: str, labels: Sequence[str], stats: Sequence[Any],
                      caption: str | None = None, *, xlabel: str | None = None,
                      id: str | None = None) -> Figure:
        """Add a horizontal error-bar chart of ``metric``: one row per label, top to bottom,
        a dot at the mean and a bar over the interval. ``stats`` holds one
        ``(mean, lo, hi)`` (or :class:`~baselines.compare.Stats`-like object) per label;
        a nan mean is written "no data", nan ends draw no bar.

        Raises:
            ImportError: No matplotlib (``pip install "distsafe[analysis]"``).
            ValueError: Not one interval per label.
        """
        labels = [str(x) for x in labels]
        ivs = [as_interval(s) for s in stats]
        if len(ivs) != len(labels) or any(iv is None for iv in ivs):
            raise ValueError(f"interval_plot: need one (mean, lo, hi) per label; got "
                             f"{len(labels)} labels and {len(ivs)} stats")
        png = _interval_png(metric, labels, ivs, xlabel)  # type: ignore[arg-type]
        alt = f"interval plot of {metric}: " + "; ".join(
            f"{lab} {format_cell(iv)}" for lab, iv in zip(labels, ivs))
        item = Figure(self.report._new_id(id, "plot"), png, alt, caption, "interval-plot")
        self.items.append(item)
        return item

    def heatmap(self, values: Sequence[Sequence[Any]] | np.ndarray, row_labels: Sequence[Any],
                col_labels: Sequence[Any], row_name: str = "", col_name: str = "",
                title: str | None = None, caption: str | None = None, *,
                cmap: str = "viridis", id: str | None = None) -> Figure:
        """Add a heatmap: ``values[i][j]`` is the cell of row ``row_labels[i]`` and column
        ``col_labels[j]``; ``row_name`` and ``col_name`` name the axes. A cell is a number or
        an interval (its mean is coloured, ``mean [lo, hi]`` written in it); nan cells are
        grey and written "–".

        Raises:
            ImportError: No matplotlib (``pip install "distsafe[analysis]"``).
            ValueError: ``values`` is not a grid of ``len(row_labels)`` by ``len(col_labels)``.
        """
        rows = [list(r) for r in values]
        rlab, clab = [str(x) for x in row_labels], [str(x) for x in col_labels]
        if len(rows) != len(rlab) or any(len(r) != len(clab) for r in rows):
            raise ValueError(f"heatmap: values must be {len(rlab)} rows of {len(clab)} cells")
        means = np.full((len(rlab), len(clab)), math.nan)
        texts = [[MISSING] * len(clab) for _ in rlab]
        for i, r in enumerate(rows):
            for j, x in enumerate(r):
                iv = as_interval(x)
                m = iv.mean if iv is not None else (float(x) if _is_number(x) else math.nan)
                means[i, j] = m
                texts[i][j] = (format_cell(iv) if iv is not None else format_number(m)
                               ).replace(" [", "\n[")
        png = _heatmap_png(means, texts, rlab, clab, row_name, col_name, title, cmap)
        what = title or "heatmap"
        alt = f"{what}: {row_name or 'rows'} by {col_name or 'columns'}; " + "; ".join(
            f"{r}, {c}: {texts[i][j].replace(chr(10), ' ')}"
            for i, r in enumerate(rlab) for j, c in enumerate(clab))
        item = Figure(self.report._new_id(id, "heatmap"), png, alt, caption, "heatmap")
        self.items.append(item)
        return item

    def html(self) -> str:
        parts = [f'<section id="{self.id}"><h2>{_esc(self.heading)}</h2>']
        if self.text:
            parts.extend(f"<p>{_esc(p.strip())}</p>" for p in re.split(r"\n\s*\n", self.text)
                         if p.strip())
        parts.extend(item.html() for item in self.items)
        parts.append("</section>")
        return "\n".join(parts)


class Report:
    """A self-contained HTML report (see the module docstring).

    Args:
        title: The page's title and heading.
        meta: What made it, shown as a small key/value table under the title (insertion
            order); :func:`provenance` gathers the usual keys.
        subtitle: A line under the title.
    """

    def __init__(self, title: str, meta: Mapping[str, Any] | None = None,
                 subtitle: str | None = None) -> None:
        self.title = str(title)
        self.meta: dict[str, Any] = dict(meta or {})
        self.subtitle = subtitle
        self.sections: list[Section] = []
        self._ids: set[str] = set()
        self._counts: dict[str, int] = {}

    def _new_id(self, wanted: str | None, prefix: str) -> str:
        if wanted is None:
            while True:
                self._counts[prefix] = self._counts.get(prefix, 0) + 1
                wanted = f"{prefix}-{self._counts[prefix]}"
                if wanted not in self._ids:
                    break
        elif not _ID.match(wanted):
            raise ValueError(f"report: id {wanted!r} must be a letter then letters, digits, "
                             "'_' or '-'")
        elif wanted in self._ids:
            raise ValueError(f"report: id {wanted!r} is already used")
        self._ids.add(wanted)
        return wanted

    def section(self, heading: str, text: str | None = None, *,
                id: str | None = None) -> Section:
        """Add a section (after the others) and return it."""
        s = Section(str(heading), text, self._new_id(id, "section"), self)
        self.sections.append(s)
        return s

    def html(self) -> str:
        """The page: one string, UTF-8 declared, loading nothing."""
        body = [f"<h1>{_esc(self.title)}</h1>"]
        if self.subtitle:
            body.append(f'<p class="subtitle">{_esc(self.subtitle)}</p>')
        if self.meta:
            rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(format_cell(v))}</td></tr>"
                           for k, v in self.meta.items())
            body.append(f'<table class="meta">{rows}</table>')
        if len(self.sections) > 1:
            links = "".join(f'<li><a href="#{s.id}">{_esc(s.heading)}</a></li>'
                            for s in self.sections)
            body.append(f"<nav><ol>{links}</ol></nav>")
        body.extend(s.html() for s in self.sections)
        body.append("<footer>distsafe report: a single file; loads nothing.</footer>")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{_esc(self.title)}</title><style>{_CSS}</style></head><body>\n"
                + "\n".join(body) + "\n</body></html>\n")

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the page to ``path`` (its folder is created): a temporary file beside it,
        then renamed into place, so a reader never sees half a page. Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = self.html()
        # beside it (same file system: the rename is atomic), a name no other writer has,
        # created with the umask's permissions like any new file
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "x", encoding="utf-8", newline="") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path


def provenance(command: Sequence[str] | str | None = None) -> dict[str, str]:
    """The usual meta block: distsafe's version, the git commit of this checkout (with
    "(uncommitted changes)" when the tracked files differ from it; left out outside a git
    checkout), the UTC date, Python's version and ``command`` (default: this process's
    ``sys.argv``).

    Example:
        >>> sorted(provenance(["distsafe", "bench"]))[:3]
        ['command', 'date', 'distsafe']
    """
    from baselines.jobs import provenance as recorded

    rec = recorded()  # the same facts a result records (baselines.jobs.provenance)
    meta = {"distsafe": rec["distsafe"] or "unknown (not installed)"}
    if rec["git_commit"]:
        meta["git commit"] = rec["git_commit"][:12] + (
            " (uncommitted changes)" if rec["git_dirty"] else "")
    meta["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    meta["python"] = platform.python_version()
    if command is None:
        command = sys.argv
    meta["command"] = command if isinstance(command, str) else " ".join(map(str, command))
    return meta


# --------------------------------------------------------------------------- plots
def _matplotlib() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``; matplotlib is imported here, never at module import."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure as MplFigure
    except ImportError as e:
        raise ImportError(f"plots in a report need matplotlib: {_INSTALL_HINT}") from e
    return MplFigure, FigureCanvasAgg


def _plain(text: str) -> str:
    """Text for matplotlib as it is: ``$`` would start mathtext."""
    return text.replace("$", r"\$")


def _png(fig: Any) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _interval_png(metric: str, labels: list[str], ivs: list[Interval],
                  xlabel: str | None) -> bytes:
    MplFigure, Canvas = _matplotlib()
    n = len(labels)
    fig = MplFigure(figsize=(7.5, 1.3 + 0.38 * max(n, 1)))
    Canvas(fig)
    ax = fig.add_subplot()
    y = np.arange(n)
    mean = np.array([iv.mean for iv in ivs], dtype=float)
    lo = np.array([iv.lo for iv in ivs], dtype=float)
    hi = np.array([iv.hi for iv in ivs], dtype=float)
    has = np.isfinite(mean)
    bar = has & np.isfinite(lo) & np.isfinite(hi)
    if bar.any():
        err = np.vstack([np.maximum(mean[bar] - lo[bar], 0), np.maximum(hi[bar] - mean[bar], 0)])
        ax.errorbar(mean[bar], y[bar], xerr=err, fmt="none", ecolor="C0", elinewidth=2,
                    capsize=4)
    if has.any():
        ax.plot(mean[has], y[has], "o", color="C0", ms=6, zorder=3)
    else:
        ax.set_xlim(0, 1)
    for i in np.flatnonzero(~has):
        ax.text(0.01, y[i], "no data", transform=ax.get_yaxis_transform(), va="center",
                color="#888", fontsize=9)
    ax.set_yticks(y, [_plain(lab) for lab in labels])
    ax.set_ylim(n - 0.5, -0.5)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(_plain(str(metric)), fontsize=11)
    ax.set_xlabel(_plain(xlabel if xlabel is not None else f"{metric} (mean, 95% interval)"))
    fig.tight_layout()
    return _png(fig)


def _heatmap_png(means: np.ndarray, texts: list[list[str]], rlab: list[str], clab: list[str],
                 row_name: str, col_name: str, title: str | None, cmap_name: str) -> bytes:
    MplFigure, Canvas = _matplotlib()
    import matplotlib as mpl
    from matplotlib.colors import Normalize

    nr, nc = means.shape
    two_lines = any("\n" in t for row in texts for t in row)
    cell_w, cell_h = (1.5, 0.75) if two_lines else (1.0, 0.5)
    fig = MplFigure(figsize=(max(4.0, 2.4 + cell_w * nc), max(2.6, 1.5 + cell_h * nr)))
    Canvas(fig)
    ax = fig.add_subplot()
    finite = means[np.isfinite(means)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    norm = Normalize(vmin, vmax)
    cmap = mpl.colormaps[cmap_name].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(means), cmap=cmap, norm=norm, aspect="auto")
    for i in range(nr):
        for j in range(nc):
            v = means[i, j]
            if np.isfinite(v):
                r, g, b, _ = cmap(norm(v))
                color = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            else:
                color = "#555"
            ax.text(j, i, texts[i][j], ha="center", va="center", color=color,
                    fontsize=8 if two_lines else 9)
    ax.set_xticks(np.arange(nc), [_plain(c) for c in clab])
    ax.set_yticks(np.arange(nr), [_plain(r) for r in rlab])
    if col_name:
        ax.set_xlabel(_plain(col_name))
    if row_name:
        ax.set_ylabel(_plain(row_name))
    if title:
        ax.set_title(_plain(title), fontsize=11)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03)
    fig.tight_layout()
    return _png(fig)
