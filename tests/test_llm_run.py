"""LLM agents through ``distsafe run`` against a local OpenAI-compatible server: a provider
that fails mid-run stops the run at its last complete epoch, ``--resume`` finishes it with a
log equal to an uninterrupted run's and without sending a completed call twice; the key never
reaches a file; conversations and judge read the run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("litellm")

from llm_policies.fake_server import FakeOpenAIServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY_VAR = "DISTSAFE_TEST_LLM_KEY"
KEY = "sk-distsafe-RUNKEY-9f8e7d6c5b4a"


def _reply(body: dict) -> str:
    """A valid dilemma reply naming the neighbours the prompt lists: D on odd agents."""
    text = body["messages"][-1]["content"]
    names = sorted(set(re.findall(r'"(agent_\d+)": "C" or "D"', text)))
    if "judge" in body["messages"][0]["content"] or "deception" in body["messages"][0]["content"]:
        return json.dumps({"deceptive": "D" in text.split("took")[-1][:40], "kinds": [],
                           "evidence": "compared"})
    moves = {n: ("D" if int(n.split("_")[1]) % 2 else "C") for n in names}
    return json.dumps({"moves": moves, "reasoning": "I answer " + ", ".join(names)})


def _scenario(tmp: Path, url: str) -> Path:
    llm = (f"{{model: openai/fake, api_base: '{url}', api_key_env: {KEY_VAR}, retries: 1, "
           "timeout: 5}")
    path = tmp / "llm.yaml"
    path.write_text(
        "name: llmrun\nenv: dilemma-v0\nagents:\n"
        f"  - {{type: llm, count: 1, llm: {llm[:-1]}, strategy: TFT}}}}\n"
        f"  - {{type: llm, count: 1, llm: {llm}}}\n"
        "  - {type: tit_for_tat, count: 1}\n  - {type: always_defect, count: 1}\n"
        "network: {topology: complete}\npayoff: {preset: llm_study}\n"
        "simulation: {n_epochs: 3, steps_per_epoch: 4, seed: 0}\n")
    return path


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, KEY_VAR: KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    return subprocess.run([sys.executable, "-m", "baselines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=240)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "llm_cache" not in p.parts and p.name != ".lock"}


def test_provider_failure_stops_cleanly_and_resume_pays_nothing_twice(tmp_path):
    with FakeOpenAIServer(replies=_reply) as server:
        config = _scenario(tmp_path, server.url)
        whole = tmp_path / "whole"
        res = _cli("run", str(config), "--out", str(whole), "--quiet", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        n_whole = server.completed
        assert n_whole == 2 * 12                      # two LLM agents, 12 steps
        # the same run again, the provider dying after 6 steps (epoch 0 and half of 1)
        start = server.requests
        server.fail = lambda i, body: 500 if i - start >= 12 else None
        broken = tmp_path / "broken"
        res = _cli("run", str(config), "--out", str(broken), "--quiet", cwd=tmp_path)
        assert res.returncode == 1
        assert "the run stopped after 1 complete epochs" in res.stderr
        assert f"resume with: distsafe run {config} --out {broken} --resume" in res.stderr
        assert (broken / "metrics.csv").read_text().count("\n") == 2  # header + epoch 0
        server.fail = None
        before = server.requests
        res = _cli("run", str(config), "--out", str(broken), "--resume", "--quiet",
                   cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        # the six steps answered before the failure came from the cache: only the rest
        assert server.requests - before == 2 * 6
        answered = [json.dumps(b, sort_keys=True) for b, s in
                    zip(server.bodies[start:], server.statuses[start:]) if s == 200]
        assert len(answered) == len(set(answered)) == 2 * 12
    a, b = _files(whole), _files(broken)
    assert a.keys() - {"usage.json"} == b.keys() - {"usage.json"}
    for name in a:
        if name not in ("usage.json", "config.yaml"):
            assert a[name] == b[name], name              # the log, chunks and metrics
    for folder in (whole, broken):                       # the key is in no file
        for p in folder.rglob("*"):
            if p.is_file():
                assert KEY.encode() not in p.read_bytes(), p


def test_conversations_and_judge_read_an_llm_run(tmp_path):
    with FakeOpenAIServer(replies=_reply) as server:
        config = _scenario(tmp_path, server.url)
        run = tmp_path / "run"
        assert _cli("run", str(config), "--out", str(run), "--quiet", cwd=tmp_path).returncode == 0
        usage = json.loads((run / "usage.json").read_text())
        totals = [u["total"] for u in usage.values()]
        assert sum(t["requests"] for t in totals) == 24 and all(t["fallbacks"] == 0
                                                                for t in totals)
        res = _cli("conversations", str(run), cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        page = (run / "conversations.html").read_text()
        assert page.count('class="turn') == 24 and "I answer" in page
        res = _cli("judge", str(run), "--model", "openai/fake", "--model", "openai/fake2",
                   "--api-base", server.url, "--api-key-env", KEY_VAR, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        assert "Cohen's kappa between the judges: 1.000 over 24 replies" in res.stdout
        judged = json.loads((run / "judgement.json").read_text())
        assert set(judged["summary"]["judges"]) == {"openai/fake", "openai/fake2"}
    for p in run.rglob("*"):
        if p.is_file():
            assert KEY.encode() not in p.read_bytes(), p


def test_llm_entries_of_a_step_wait_at_the_same_time(tmp_path):
    """Two LLM entries (two policies) are asked at once each step: a step costs about one
    round trip, and the results are those of asking them one after the other."""
    import time

    import envs
    from baselines.runner import rollout
    from llm_policies import LLMPolicy

    os.environ[KEY_VAR] = KEY
    with FakeOpenAIServer(replies=_reply, latency=0.4) as server:
        def policies():
            kw = {"model": "openai/fake", "api_base": server.url, "api_key_env": KEY_VAR,
                  "cache_dir": None}
            a, b = LLMPolicy(seed=1, **kw), LLMPolicy(seed=2, strategy="TFT", **kw)
            return {"agent_0": a, "agent_1": b, "agent_2": a, "agent_3": b}
        env = envs.make("dilemma-v0", n_agents=4, n_epochs=1, steps_per_epoch=3)
        t0 = time.perf_counter()
        rows = rollout(env, policies(), seed=0)
        elapsed = time.perf_counter() - t0
        assert server.max_in_flight == 4
        assert elapsed < 3 * 0.4 * 1.8           # one round trip a step, not two
        again = rollout(env, policies(), seed=0, use_arrays=False)
    assert json.dumps(rows) == json.dumps(again)
