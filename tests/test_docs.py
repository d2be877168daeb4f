"""The docs stay true: README.md and docs/*.md run as written.

Each Markdown file is replayed top to bottom in its own temporary working directory (with
``configs/`` linked in), the way a reader would follow it:

* a fenced block whose info string names a file (```` ```python file=my_policies.py ````)
  is written to that file;
* every other ``python`` block runs, in order, in one namespace per document, and must print
  something (each example prints what it shows);
* every ``distsafe ...`` (or ``.venv/bin/distsafe ...``) line of a ``bash`` block runs as a
  real process, the installed ``distsafe`` script next to this interpreter, and must exit 0;
  ``/tmp/`` paths are redirected into the working directory;
* every ``make TARGET`` line names a target of the Makefile.

One test per block, so a failure names the document and the line; a block first replays the
blocks above it that have not run yet. The docs must also stand alone: no pointer into the
project's private notes, and every relative link resolves.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", flags=re.S | re.M)

# blocks that are expected to fail for now: (document, text in the block) -> reason
XFAIL: dict[tuple[str, str], str] = {}


@dataclass
class Block:
    doc: Path
    line: int
    lang: str
    file: str | None
    code: str

    @property
    def id(self) -> str:
        first = next((ln for ln in self.code.splitlines() if ln.strip()), "")
        kind = f"file={self.file}" if self.file else first.strip()[:40]
        return f"{self.doc.relative_to(ROOT)}:{self.line}:{kind}"


def parse(doc: Path) -> list[Block]:
    text = doc.read_text()
    out = []
    for m in FENCE.finditer(text):
        info = m.group(1).split()
        lang = info[0] if info else ""
        attrs = dict(a.split("=", 1) for a in info[1:] if "=" in a)
        out.append(Block(doc, text.count("\n", 0, m.start()) + 1, lang, attrs.get("file"),
                         m.group(2)))
    return out


def shell_lines(block: Block) -> list[str]:
    """The command lines of a bash block, comments dropped, continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", block.code)
    return [ln.split(" #")[0].strip() for ln in joined.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


def distsafe_command() -> list[str]:
    script = Path(sys.executable).parent / "distsafe"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "baselines.cli"]  # not installed: run the module


@dataclass
class DocRun:
    """One document being replayed: its working directory, namespace and progress."""

    doc: Path
    cwd: Path
    blocks: list[Block]
    namespace: dict = field(default_factory=dict)
    done: int = 0

    def run(self, block: Block) -> None:
        if block.file:
            path = self.cwd / block.file
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.code)
        elif block.lang == "python":
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(block.code, f"{block.doc.name}:{block.line}", "exec"),
                     self.namespace)
            sys.stdout.write(buf.getvalue())
            assert buf.getvalue().strip(), f"{block.id}: the example prints nothing"
        elif block.lang in ("bash", "sh", "shell"):
            for line in shell_lines(block):
                self.run_line(block, line)

    def run_line(self, block: Block, line: str) -> None:
        words = shlex.split(line)
        if words[0] == "make":
            makefile = (ROOT / "Makefile").read_text()
            for target in words[1:]:
                if "=" not in target:
                    assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), \
                        f"{block.id}: no Makefile target {target!r}"
            return
        if words[0] not in ("distsafe", ".venv/bin/distsafe"):
            return  # other commands (pip, pytest, ...) are shown, not run
        args = [w.replace("/tmp/", f"{self.cwd}/tmp/") if w.startswith("/tmp/") else w
                for w in words[1:]]
        (self.cwd / "tmp").mkdir(exist_ok=True)
        # the shell expands globs (configs/*.yaml) as it would for the reader
        cmd = " ".join(map(shlex.quote, distsafe_command())) + " " + " ".join(
            a if any(ch in a for ch in "*?[") else shlex.quote(a) for a in args)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        if distsafe_command()[0] == sys.executable:
            env["PYTHONPATH"] = str(ROOT)
        res = subprocess.run(cmd, shell=True, cwd=self.cwd, env=env, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, f"{block.id}: `{line}` exited {res.returncode}:\n" \
                                    f"{res.stderr[-2000:]}"


_RUNS: dict[Path, DocRun] = {}


@pytest.fixture(scope="session")
def doc_runs(tmp_path_factory):
    yield _RUNS
    for run in _RUNS.values():
        for name in [m for m in sys.modules if m in _local_modules(run.cwd)]:
            del sys.modules[name]
    _RUNS.clear()


def _local_modules(cwd: Path) -> set[str]:
    return {p.stem for p in cwd.glob("*.py")}


def _all_blocks() -> list:
    params = []
    for doc in DOCS:
        for i, b in enumerate(parse(doc)):
            if not (b.file or b.lang in ("python", "bash", "sh", "shell")):
                continue
            marks = [pytest.mark.xfail(reason=reason, strict=False)
                     for (name, text), reason in XFAIL.items()
                     if name == str(doc.relative_to(ROOT)) and text in b.code]
            params.append(pytest.param(doc, i, id=b.id, marks=marks))
    return params


def replay(doc: Path, upto: int, runs: dict, tmp_path_factory, monkeypatch) -> DocRun:
    """The document's run, with every block above ``upto`` run once (failures are theirs)."""
    run = runs.get(doc)
    if run is None:
        cwd = tmp_path_factory.mktemp(doc.stem.lower())
        (cwd / "configs").symlink_to(ROOT / "configs")
        run = runs[doc] = DocRun(doc, cwd, parse(doc), {"__name__": f"doc_{doc.stem.lower()}"})
    monkeypatch.chdir(run.cwd)
    monkeypatch.syspath_prepend(str(run.cwd))  # as `python` started in that folder
    while run.done < upto:
        with contextlib.suppress(Exception):
            run.run(run.blocks[run.done])
        run.done += 1
    return run


@pytest.mark.parametrize(("doc", "index"), _all_blocks())
def test_doc_block(doc, index, doc_runs, tmp_path_factory, monkeypatch):
    run = replay(doc, index, doc_runs, tmp_path_factory, monkeypatch)
    run.done = max(run.done, index + 1)
    run.run(run.blocks[index])


def test_readme_replay_reproduces_metrics(doc_runs, tmp_path_factory, monkeypatch):
    """README's `distsafe replay ... --out /tmp/replayed.csv` equals the run's metrics.csv."""
    readme = ROOT / "README.md"
    run = replay(readme, len(parse(readme)), doc_runs, tmp_path_factory, monkeypatch)
    assert (run.cwd / "tmp" / "replayed.csv").read_bytes() == \
        (run.cwd / "runs" / "ne7" / "metrics.csv").read_bytes()


def test_readme_shows_the_commands():
    bash = [ln for b in parse(ROOT / "README.md") if b.lang == "bash" for ln in shell_lines(b)]
    assert "make demo" in bash and "make test" in bash
    assert sum(ln.startswith(".venv/bin/distsafe") for ln in bash) >= 4
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "torch==2.13.0" in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("path", [*DOCS, *sorted((ROOT / "configs").glob("*.yaml"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_stands_alone(path):
    """No pointer into notes outside the project; relative links resolve."""
    text = path.read_text()
    for bad in ("shared/", "REFERENCE.md", "DESIGN.md"):
        assert bad not in text, f"{path.name} points outside the project: {bad!r}"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"
