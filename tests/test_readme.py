"""README's examples stay true: its Python blocks run, its commands work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("code", blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_python_examples_run(code, capsys):
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip()  # each example prints what it shows


def test_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", "\n".join(blocks("bash")), flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci and "torch==2.13.0" in makefile


def test_distsafe_commands_run(tmp_path):
    """The `.venv/bin/distsafe ...` lines, run with this interpreter, outputs in tmp."""
    lines = [ln.split("#")[0].strip() for ln in "\n".join(blocks("bash")).splitlines()
             if ln.startswith(".venv/bin/distsafe")]
    assert len(lines) >= 4
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for line in lines:
        cmd = line.replace(".venv/bin/distsafe", f"{sys.executable} -m baselines.cli")
        cmd = cmd.replace(" /tmp/", f" {tmp_path}/").replace(" runs/", f" {tmp_path}/runs/")
        res = subprocess.run(cmd, shell=True, cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, (cmd, res.stderr)
    assert (tmp_path / "replayed.csv").read_bytes() == \
        (tmp_path / "runs" / "ne7" / "metrics.csv").read_bytes()
