"""``distsafe fork`` (restore a run at round R, change a setting, play on) and ``distsafe run
--resume`` of a commons run killed mid-episode. Real runs through the CLI; the commons runs
use a small test policy given by import path (random valid actions, takes biased by
``greed``; ``DISTSAFE_TEST_DELAY`` seconds per call, so a run can be killed mid-episode)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from baselines.cli import main
from envs.core.events import _read_chunk, _table_columns

ROOT = Path(__file__).resolve().parent.parent

POLICY = '''\
import os
import time

import numpy as np
from pydantic import Field

from baselines.policy import Policy


class Harvest(Policy):
    """Random valid commons actions; the take is biased by greed."""

    name = "harvest"
    variants = ("commons",)

    class Params(Policy.Params):
        greed: float = Field(0.3, ge=0.0, le=1.0)

    def act_arrays(self, obs):
        delay = float(os.environ.get("DISTSAFE_TEST_DELAY", "0"))
        if delay:
            time.sleep(delay)
        n = len(obs)
        out = np.zeros((n, len(obs.nvec)), dtype=np.int64)
        for d in range(len(obs.nvec)):
            m = obs.mask(d).astype(bool)
            out[:, d] = (self.rng.random((n, m.shape[1])) * m).argmax(1)
        k = int(obs.nvec[0])
        out[:, 0] = np.minimum(k - 1, (self.rng.random(n) * self.params.greed * k)
                               .astype(np.int64))
        return out
'''

COMMONS = """\
name: fork_commons
env: commons-v0
agents:
  - {type: "fork_test_policy:Harvest", count: 3, params: {greed: 0.2}}
  - {type: "fork_test_policy:Harvest", count: 2, params: {greed: 0.5}}
env_params: {elimination: false, accusations: false}  # nobody is eliminated: 30 rounds
simulation: {n_epochs: 30, steps_per_epoch: 1, seed: 5}
"""

# collapses at round 79 of 120 (checked below): long enough to be killed mid-episode
COLLAPSING = """\
name: fork_collapse
env: commons-v0
agents:
  - {type: "fork_test_policy:Harvest", count: 3, params: {greed: 0.15}}
  - {type: "fork_test_policy:Harvest", count: 2, params: {greed: 0.6}}
env_params: {elimination: false, accusations: false, collapse_threshold: 15.0}
simulation: {n_epochs: 120, steps_per_epoch: 1, seed: 11}
"""

SANDBOX = """\
name: fork_sandbox
agents:
  - {type: honest, count: 4}
  - {type: deceptive, count: 2}
network: {topology: complete}
simulation: {n_epochs: 4, steps_per_epoch: 5, seed: 2}
"""

GOVERNED = """\
name: fork_governed
agents:
  - {type: honest, count: 4}
  - {type: deceptive, count: 2}
governance: {transaction_tax: {rate: 0.1}, circuit_breaker: {window: 5}}
simulation: {n_epochs: 4, steps_per_epoch: 5, seed: 2}
"""

DILEMMA = """\
name: fork_dilemma
env: dilemma-v0
agents:
  - {type: tit_for_tat, count: 4}
  - {type: always_defect, count: 2}
  - {type: random, count: 2}
network: {topology: small_world, k: 4}
simulation: {n_epochs: 4, steps_per_epoch: 5, seed: 2}
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with the test policy module and the scenarios; runs of each."""
    d = tmp_path_factory.mktemp("fork")
    (d / "fork_test_policy.py").write_text(POLICY)
    for name, text in (("commons", COMMONS), ("collapse", COLLAPSING), ("sandbox", SANDBOX),
                       ("dilemma", DILEMMA), ("governed", GOVERNED)):
        (d / f"{name}.yaml").write_text(text)
    return d


@pytest.fixture(autouse=True)
def _inside(work, monkeypatch):
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))


def cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def runs(work) -> dict[str, Path]:
    old = os.getcwd()
    os.chdir(work)
    sys.path.insert(0, str(work))
    try:
        out = {}
        for name, fmt in (("commons", "arrow"), ("sandbox", "arrow"), ("dilemma", "jsonl"),
                          ("governed", "jsonl")):
            assert cli("run", f"{name}.yaml", "--out", f"run_{name}", "--quiet",
                       "--log-format", fmt) == 0
            out[name] = work / f"run_{name}"
        return out
    finally:
        os.chdir(old)
        sys.path.remove(str(work))


# --------------------------------------------------------------------------- helpers
def lines(path: Path) -> list[bytes]:
    return (path / "events.jsonl").read_bytes().splitlines(keepends=True)


def chunk(folder: Path, name: str) -> dict[str, np.ndarray]:
    return _table_columns(_read_chunk(folder / name))


def same_chunks(a: Path, b: Path, names: list[str]) -> None:
    for name in names:
        x, y = chunk(a, name), chunk(b, name)
        assert sorted(x) == sorted(y)
        for k in x:
            assert np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f"), (name, k)


def chunk_names(folder: Path) -> list[str]:
    return [json.loads(line)["file"] for line in lines(folder)
            if b'"interaction_chunk"' in line]


def assert_same_run(a: Path, b: Path) -> None:
    """Byte-identical logs and metrics; chunk files equal by content."""
    assert lines(a) == lines(b)
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    assert sorted(p.name for p in (a / "events.interactions").iterdir()) == \
        sorted(p.name for p in (b / "events.interactions").iterdir())
    same_chunks(a, b, chunk_names(a))


def _before(line: bytes, R: int) -> bool:
    """Whether a log line belongs to the rounds before R."""
    obj = json.loads(line)
    if obj["type"] == "run_start":
        return True
    step = obj.get("last_step", obj.get("step"))
    return isinstance(step, int) and step < R and obj["type"] != "run_end"


def prefix(folder: Path, R: int) -> list[bytes]:
    out = []
    for line in lines(folder):
        if not _before(line, R):
            break
        out.append(line)
    return out


def assert_forked_at(original: Path, forked: Path, R: int) -> None:
    """Identical up to round R (lines and chunk contents), different after."""
    head = prefix(original, R)
    assert head == prefix(forked, R)
    assert any(json.loads(x).get("step") == R - 1 for x in head) or R == 0
    names = [json.loads(x)["file"] for x in head if b'"interaction_chunk"' in x]
    same_chunks(original, forked, names)
    assert lines(original) != lines(forked)


def refused(capsys, *args: object) -> str:
    """Run a command that must be refused (exit 2); its stderr."""
    capsys.readouterr()
    assert cli(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("distsafe: error: ")
    return err


# --------------------------------------------------------------------------- forks
@pytest.mark.parametrize("R", [0, 7, 29])
def test_fork_without_changes_reproduces_the_run(runs, work, R):
    out = work / f"same{R}"
    assert cli("fork", runs["commons"], "--at-round", R, "--out", out, "--quiet") == 0
    assert_same_run(runs["commons"], out)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["fork"] == {"from": str(runs["commons"]), "at_round": R, "set": [],
                              "earlier": []}


def test_a_fork_removes_what_a_killed_fork_into_the_same_folder_left_beside(runs, work):
    """A SIGKILLed fork leaves its hidden work folder beside ``--out`` (nothing can clean
    it up then); they piled up. The next fork into that folder, holding its lock, removes
    them, and only them."""
    out = work / "after_kill"
    stale = [work / ".after_kill.fork-ab12cd_3", work / ".after_kill.fork-zz99zz99"]
    keep = [work / ".after_kill.fork-keep", work / ".other.fork-ab12cd_3",
            work / ".after_kill.fork-ab12cd_3x"]
    for d in stale + keep:
        d.mkdir()
        (d / "events.jsonl").write_text("{}\n")
    assert cli("fork", runs["commons"], "--at-round", 3, "--out", out, "--quiet") == 0
    assert_same_run(runs["commons"], out)
    assert not any(d.exists() for d in stale) and all(d.exists() for d in keep)


def test_fork_replaces_an_entrys_policy_from_round_r(runs, work):
    out = work / "abstain"
    assert cli("fork", runs["commons"], "--at-round", 2, "--out", out, "--quiet",
               "--set", "agents[1].params.greed=0.0") == 0
    assert_forked_at(runs["commons"], out, 2)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["agents"][1]["params"]["greed"] == 0.0

    def requested(folder: Path) -> list[list[float]]:
        return [json.loads(x)["data"]["requested"] for x in lines(folder)
                if b'"step_state"' in x]
    # from round 2 on, entry 1 (agents 3 and 4) takes nothing; before, it did as it had
    before, after = requested(runs["commons"]), requested(out)
    assert after[:2] == before[:2]
    assert all(r[3] == r[4] == 0.0 for r in after[2:])
    assert any(r[3] + r[4] > 0 for r in before[2:])


def test_fork_changes_a_live_env_field(runs, work):
    out = work / "threshold"
    assert cli("fork", runs["commons"], "--at-round", 3, "--out", out, "--quiet",
               "--set", "env.collapse_threshold=60") == 0
    assert_forked_at(runs["commons"], out, 3)
    ends = [json.loads(x) for x in lines(out) if b'"epoch_end"' in x]
    assert ends[-1]["step"] == 3 and ends[-1]["state"]["terminated"] is True  # collapsed
    assert json.loads(lines(out)[-1]) == {"type": "run_end", "step": 3, "epoch": 3}
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["env_params"]["collapse_threshold"] == 60
    assert config["fork"]["set"] == ["env.collapse_threshold=60"]
    # forking the fork replays its change at its round
    again = work / "threshold2"
    assert cli("fork", out, "--at-round", 3, "--out", again, "--quiet") == 0
    assert_same_run(out, again)
    assert yaml.safe_load((again / "config.yaml").read_text())["fork"]["earlier"] == \
        [{"at_round": 3, "set": ["env.collapse_threshold=60"]}]


def test_fork_adds_a_lever(runs, work):
    out = work / "audit"
    assert cli("fork", runs["commons"], "--at-round", 4, "--out", out, "--quiet",
               "--set", "governance.random_audit.probability=1.0") == 0
    gov = [json.loads(x) for x in lines(out) if b'"type":"governance"' in x]
    assert gov and min(g["step"] for g in gov) >= 4
    assert not [x for x in lines(runs["commons"]) if b'"type":"governance"' in x]
    assert_forked_at(runs["commons"], out, 4)


def test_fork_adds_monitoring_and_a_fork_of_the_fork_tunes_it(runs, work, capsys):
    from wrappers.stack import LEVERS

    if "monitoring" not in LEVERS:
        pytest.skip("no monitoring lever")
    out = work / "monitored"
    assert cli("fork", runs["commons"], "--at-round", 2, "--out", out, "--quiet",
               "--set", "governance.monitoring.z_threshold=1.0") == 0
    flags = [json.loads(x) for x in lines(out) if b'"lever":"monitoring"' in x]
    assert flags and min(f["step"] for f in flags) >= 2
    assert_forked_at(runs["commons"], out, 2)
    # the fork's own fork replays the lever's arrival at round 2, then tunes it at 5
    tuned = work / "monitored_tuned"
    assert cli("fork", out, "--at-round", 5, "--out", tuned, "--quiet",
               "--set", "governance.monitoring.z_threshold=2.5") == 0
    assert prefix(out, 5) == prefix(tuned, 5)
    record = yaml.safe_load((tuned / "config.yaml").read_text())["fork"]
    assert record["earlier"] == [{"at_round": 2,
                                  "set": ["governance.monitoring.z_threshold=1.0"]}]
    err = refused(capsys, "fork", out, "--at-round", 5, "--out", work / "refused",
                  "--set", "governance.monitoring.detector=llm",
                  "--set", "governance.monitoring.llm={model: openai/x, dry_run: true}")
    assert "governance.monitoring.detector: is fixed when the lever starts" in err


def test_fork_changes_a_levers_parameters_and_refuses_what_cannot_change(runs, work,
                                                                         capsys):
    out = work / "taxed"
    assert cli("fork", runs["governed"], "--at-round", 8, "--out", out, "--quiet",
               "--set", "governance.transaction_tax.rate=0.5",
               "--set", "governance.collusion_detector.z_threshold=2.0") == 0
    assert prefix(runs["governed"], 8) == prefix(out, 8)
    assert lines(runs["governed"]) != lines(out)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["governance"]["transaction_tax"]["rate"] == 0.5
    assert config["governance"]["collusion_detector"]["z_threshold"] == 2.0
    refused_out = work / "refused"
    err = refused(capsys, "fork", runs["governed"], "--at-round", 8, "--out", refused_out,
                  "--set", "governance.circuit_breaker.window=3",
                  "--set", "governance.random_audit.probability=0.3",
                  "--set", "governance.transaction_tax=null")
    assert ("governance.circuit_breaker.window: is fixed when the lever starts (it sizes or "
            "builds the lever's state), so it cannot change mid-run; allowed: threshold, "
            "violations, freeze_epochs") in err
    assert "governance.random_audit: cannot be added mid-run before circuit_breaker" in err
    assert "governance.transaction_tax: a lever cannot be removed mid-run" in err
    assert len(err.splitlines()) == 3  # every problem, one line each
    assert not refused_out.exists()


def test_fork_replaces_the_saboteur_and_turns_members_into_monitors(work, capsys):
    """With the commons' scripted policies (skipped where they are missing)."""
    from baselines.scripted import PolicyLookupError, resolve_policy

    try:
        for name in ("sustainable", "saboteur", "monitor"):
            resolve_policy(name, "commons")
    except PolicyLookupError:
        pytest.skip("the commons' scripted policies are not there")
    (work / "saboteur.yaml").write_text(
        "name: fork_saboteur\nenv: commons-v0\nagents:\n"
        "  - {type: sustainable, count: 3}\n  - {type: saboteur, count: 1}\n"
        "simulation: {n_epochs: 12, steps_per_epoch: 1, seed: 0}\n")
    assert cli("run", "saboteur.yaml", "--out", "saboteur", "--quiet") == 0
    out = work / "saboteur_replaced"
    assert cli("fork", "saboteur", "--at-round", 4, "--out", out, "--quiet",
               "--set", "agents[1].type=sustainable", "--set", "agents[0].type=monitor") == 0
    assert_forked_at(work / "saboteur", out, 4)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert [a["type"] for a in config["agents"]] == ["monitor", "sustainable"]
    assert config["fork"]["set"] == ["agents[1].type=sustainable", "agents[0].type=monitor"]


@pytest.mark.parametrize("variant,R,change", [
    ("sandbox", 7, "agents[1].type=honest"),
    ("dilemma", 12, "agents[1].type=tit_for_tat"),
])
def test_fork_of_other_variants(runs, work, variant, R, change):
    same = work / f"{variant}_same"
    assert cli("fork", runs[variant], "--at-round", R, "--out", same, "--quiet") == 0
    assert lines(runs[variant]) == lines(same)
    assert (runs[variant] / "metrics.csv").read_bytes() == (same / "metrics.csv").read_bytes()
    if (runs[variant] / "events.interactions").is_dir():
        same_chunks(runs[variant], same, chunk_names(runs[variant]))
    out = work / f"{variant}_changed"
    assert cli("fork", runs[variant], "--at-round", R, "--out", out, "--quiet",
               "--set", change) == 0
    if variant == "dilemma":  # jsonl: every line before R is kept as is
        assert prefix(runs[variant], R) == prefix(out, R)
        assert lines(runs[variant]) != lines(out)
    else:  # arrow, R mid-epoch: the lines before R's epoch, and the rows before R
        head = prefix(runs[variant], R)
        assert head == prefix(out, R)
        a = chunk(runs[variant], chunk_names(runs[variant])[1])
        b = chunk(out, chunk_names(out)[1])
        keep_a, keep_b = a["step"] < R, b["step"] < R
        for k in a:
            assert np.array_equal(a[k][keep_a], b[k][keep_b], equal_nan=a[k].dtype.kind == "f")
        assert lines(runs[variant]) != lines(out)
    assert yaml.safe_load((out / "config.yaml").read_text())["agents"][1]["type"] == \
        change.split("=")[1]


@pytest.mark.parametrize("setting,named", [
    ("agents[0].count=2", "--set agents[0].count: an entry's count cannot change"),
    ("agents[7].type=greedy", "agents[7]: index out of range"),
    ("agents[0].type=no_such_policy", "agents[0].type: unknown agent type 'no_such_policy'"),
    ("agents[0].params.greed=2", "agents[0].params.greed: Input should be less than"),
    ("env.capacity=50", "--set env.capacity: capacity cannot change mid-run; allowed fields "
                        "of commons-v0: growth_rate"),
    ("env.collapse_threshold=-1", "env.collapse_threshold: Input should be greater than"),
    ("env.payoff.nope=2", "env.payoff.nope: unknown key; allowed: credit_per_unit, "
                          "externality"),
    ("env.messages=maybe", "env.messages: Input should be a valid boolean"),
    ("network.k=3", "--set network.k: network cannot change mid-run; allowed: agents[k].type"),
    ("governance.no_lever.x=1", "governance.no_lever: unknown key; allowed:"),
    ("nonsense", "--set nonsense: expected KEY=VALUE"),
])
def test_bad_settings_are_refused_and_nothing_is_written(runs, work, capsys, setting, named):
    out = work / "refused"
    err = refused(capsys, "fork", runs["commons"], "--at-round", 3, "--out", out,
                  "--set", setting)
    assert named in err
    assert not out.exists()


def test_refusals_name_the_range_the_fields_and_the_differing_epoch(runs, work, capsys):
    out = work / "refused"
    err = refused(capsys, "fork", runs["commons"], "--at-round", 30, "--out", out)
    assert "--at-round: 30 lies outside the run; allowed: 0 .. 29" in err
    err = refused(capsys, "fork", runs["sandbox"], "--at-round", 3, "--out", out,
                  "--set", "env.max_neighbors=3")
    assert "allowed fields of sandbox-v0: none" in err
    err = refused(capsys, "fork", work / "nowhere", "--at-round", 1, "--out", out)
    assert "no such run folder" in err
    # a log whose round 2 no longer matches a re-run (code or config changed)
    import shutil

    tampered = work / "tampered"
    shutil.copytree(runs["commons"], tampered)
    text = (tampered / "events.jsonl").read_text().splitlines(keepends=True)
    k = next(i for i, x in enumerate(text) if '"type":"step_state","step":2,' in x)
    text[k] = text[k].replace('"stock_before":', '"stock_before":1', 1)
    (tampered / "events.jsonl").write_text("".join(text))
    err = refused(capsys, "fork", tampered, "--at-round", 7, "--out", out)
    assert "cannot fork: epoch 2 of the log differs" in err
    assert not out.exists()
    assert not [p for p in work.iterdir() if p.name.startswith(".refused")]
    # an existing run is kept unless --overwrite
    err = refused(capsys, "fork", runs["commons"], "--at-round", 3, "--out",
                  work / "same7")
    assert "already holds a run" in err


# --------------------------------------------------------------------------- resume
def _distsafe(work: Path, *args: object, delay: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(work)]),
           "DISTSAFE_TEST_DELAY": str(delay)}
    return subprocess.Popen([sys.executable, "-m", "baselines.cli", *map(str, args)],
                            cwd=work, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_commons_run_killed_mid_episode_resumes_losing_no_round(work):
    full = work / "collapse_full"
    p = _distsafe(work, "run", "collapse.yaml", "--out", full, "--quiet")
    assert p.wait(timeout=60) == 0, p.communicate()
    last = json.loads(lines(full)[-1])
    assert last == {"type": "run_end", "step": 79, "epoch": 79}  # ended early: collapse

    killed = work / "collapse_killed"
    p = _distsafe(work, "run", "collapse.yaml", "--out", killed, "--quiet", delay=0.03)
    deadline = time.monotonic() + 60
    log = killed / "events.jsonl"
    while time.monotonic() < deadline:
        if log.is_file() and log.read_bytes().count(b'"type":"epoch_end"') >= 25:
            break
        assert p.poll() is None, p.communicate()
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    logged = log.read_bytes().count(b'"type":"epoch_end"')
    assert 25 <= logged < 80  # killed mid-episode
    done = [json.loads(x)["epoch"] for x in lines(killed) if b'"epoch_end"' in x]

    p = _distsafe(work, "run", "collapse.yaml", "--out", killed, "--resume", "--quiet")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert f"resuming from epoch {done[-1] + 1}" in err
    assert_same_run(full, killed)


# --------------------------------------------------------------------------- LLM runs
def _llm_reply(body: dict) -> str:
    """A valid dilemma reply naming the neighbours the prompt lists: D on odd agents."""
    import re

    text = body["messages"][-1]["content"]
    names = sorted(set(re.findall(r'"(agent_\d+)": "C" or "D"', text)))
    moves = {n: ("D" if int(n.split("_")[1]) % 2 else "C") for n in names}
    return json.dumps({"moves": moves, "reasoning": "I answer " + ", ".join(names)})


def test_fork_of_an_llm_run_replays_from_the_copied_cache(tmp_path):
    pytest.importorskip("litellm")
    from llm_policies.fake_server import FakeOpenAIServer

    key_var = "DISTSAFE_TEST_FORK_KEY"
    env = {**os.environ, key_var: "sk-test-fork", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "PYTHONPATH": str(ROOT)}

    def run(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "baselines.cli", *map(str, args)],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)

    with FakeOpenAIServer(replies=_llm_reply) as server:
        llm = (f"{{model: openai/fake, api_base: '{server.url}', api_key_env: {key_var}, "
               "retries: 0, timeout: 5}")
        (tmp_path / "llm.yaml").write_text(
            "name: llmfork\nenv: dilemma-v0\nagents:\n"
            f"  - {{type: llm, count: 1, llm: {llm}}}\n"
            "  - {type: tit_for_tat, count: 1}\n  - {type: always_defect, count: 1}\n"
            "network: {topology: complete}\n"
            "simulation: {n_epochs: 3, steps_per_epoch: 3, seed: 0}\n")
        res = run("run", "llm.yaml", "--out", "orig", "--quiet")
        assert res.returncode == 0, res.stderr
        assert server.requests == 9
        res = run("fork", "orig", "--at-round", 5, "--out", "same", "--quiet")
        assert res.returncode == 0, res.stderr
        assert server.requests == 9  # every reply came from the copied cache
    orig, same = tmp_path / "orig", tmp_path / "same"
    assert b'"type":"turn"' in (orig / "events.jsonl").read_bytes()
    assert_same_run(orig, same)
    assert (same / "llm_cache").is_dir()


def test_a_forks_config_is_not_run_from_round_zero(runs, work, capsys):
    """A fork's config.yaml names where it came from; run and validate refuse to replay
    it from the start (its changes begin at a round), saying how to re-create it."""
    out = work / "fork_cfg"
    assert cli("fork", runs["commons"], "--at-round", 2, "--set",
               "agents[0].type=greedy", "--out", out, "--overwrite", "--quiet") == 0
    capsys.readouterr()
    assert cli("validate", out / "config.yaml") == 2
    err = capsys.readouterr().err
    assert "fork: this is the config of a fork of" in err and "at round 2" in err
