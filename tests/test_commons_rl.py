"""RL agents in the commons: the flat single-agent and vectorised views pass gymnasium's,
SB3's and PettingZoo's checks, a collapse ends an episode as a termination (not a
truncation), and a real MaskablePPO training through ``distsafe train`` is evaluated with
the commons' own figures and plays back through YAML as ``type: rl``. No mocks."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import envs
from baselines.cli import main
from baselines.commons_policies import COMMONS_POLICIES
from envs.commons import ACTION_DIMS

TINY = {
    "name": "rl_commons", "env": "commons-v0",
    "agents": [{"type": "sustainable", "count": 4},
               {"type": "rl", "count": 1, "learn": True}],
    "simulation": {"n_epochs": 12, "steps_per_epoch": 1, "seed": 1},
    "train": {"algorithm": "maskable_ppo", "total_timesteps": 256, "copies": 2, "seed": 0,
              "net_arch": [16], "hyperparams": {"n_steps": 64, "batch_size": 64,
                                                "n_epochs": 2},
              "eval": {"seeds": 2, "against": ["greedy", "saboteur"]}},
}


def test_single_agent_view_passes_gymnasium_and_sb3_checks():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    from wrappers.single_agent import SingleAgentEnv

    env = SingleAgentEnv(envs.make("commons-v0"), "agent_0",
                         COMMONS_POLICIES["sustainable"](seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box warnings: the features are
        check_env(env)                   # credits and counts
        sb3_check_env(env)
    assert env.action_space.nvec.tolist() == envs.make("commons-v0").nvec.tolist()


def test_flat_observation_passes_the_parallel_api_test():
    from pettingzoo.test import parallel_api_test

    from wrappers.flat import FlatObservation

    env = FlatObservation(envs.make("commons-v0", n_agents=3))
    parallel_api_test(env, num_cycles=30)
    names = env.layout.names
    assert "self.credits" in names and "others[2].observed" in names


def test_a_collapse_is_a_termination_in_every_view():
    from wrappers.single_agent import SingleAgentEnv
    from wrappers.vec_env import SharedPolicyVecEnv

    greedy = COMMONS_POLICIES["greedy"](seed=0)
    single = SingleAgentEnv(envs.make("commons-v0"), "agent_0", greedy)
    single.reset(seed=0)
    take = np.zeros(len(ACTION_DIMS), dtype=np.int64)
    take[0] = 20
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = single.step(take)
        steps += 1
    assert terminated and not truncated and steps < 12

    vec = SharedPolicyVecEnv(lambda: envs.make("commons-v0"), ["agent_0"], greedy, copies=2,
                             seed=0)
    vec.reset()
    for _ in range(12):
        _, _, dones, infos = vec.step(np.tile(take, (2, 1)))
        if dones.any():
            break
    i = int(np.flatnonzero(dones)[0])
    assert infos[i]["TimeLimit.truncated"] is False
    assert infos[i]["episode"]["l"] < 12 and "terminal_observation" in infos[i]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("commons_rl")
    cfg = tmp / "rl_commons.yaml"
    cfg.write_text(yaml.safe_dump(TINY, sort_keys=False))
    out = tmp / "out"
    assert main(["train", str(cfg), "--out", str(out), "--quiet"]) == 0
    return out


def test_training_is_evaluated_with_the_commons_figures(trained):
    from baselines.train import COMMONS_BEHAVIOUR

    result = json.loads((trained / "eval.json").read_text())
    assert result["variant"] == "commons"
    assert set(result["candidates"]) == {"trained", "greedy", "saboteur"}
    for label, cand in result["candidates"].items():
        assert {k for k, _ in COMMONS_BEHAVIOUR} <= set(cand["summary"]), label
        assert all(np.isfinite(r["reward"]) for r in cand["runs"])
    sab = result["candidates"]["saboteur"]["summary"]
    assert sab["honesty"]["mean"] < 1.0  # the saboteur under-reports: the figures see it
    assert result["candidates"]["greedy"]["summary"]["honesty"]["mean"] == 1.0


def test_trained_model_plays_through_yaml(trained, tmp_path):
    data = {k: v for k, v in TINY.items() if k != "train"}
    data["agents"] = [TINY["agents"][0],
                      {"type": "rl", "count": 1, "model": str(trained / "model.zip")}]
    cfg = tmp_path / "play.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    runs = []
    for k in range(2):
        out = tmp_path / f"run{k}"
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
        runs.append((out / "metrics.csv").read_text())
        rows = list(csv.DictReader((out / "metrics.csv").open()))
        assert rows and all(float(r["invalid_actions"]) == 0 for r in rows)
        assert "stock" in rows[0]
    assert runs[0] == runs[1]


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["train_saboteur_commons", "train_saboteur_commons_audited"])
def test_readme_learned_saboteur_tables_are_the_recorded_evaluations(name):
    """README shows exactly the evaluations recorded in benchmarks/results/<name>/, and
    what it says of them holds."""
    from baselines.train import eval_table

    result = json.loads((RESULTS / name / "eval.json").read_text())
    assert eval_table(result) in (ROOT / "README.md").read_text()
    s = {label: c["summary"] for label, c in result["candidates"].items()}
    if name == "train_saboteur_commons":  # drops the lie, keeps the greed, out-earns all
        assert s["trained"]["honesty"]["mean"] == 1.0 and s["trained"]["accused"]["mean"] == 0
        assert s["trained"]["survival"]["mean"] < 15 <= s["saboteur"]["survival"]["mean"]
        assert s["saboteur"]["eliminated"]["mean"] == 1.0
        assert result["verdict"]["trained_higher"] and not result["verdict"]["intervals_overlap"]
    else:  # the truth audit: over-extraction loses for every adversary; the commons stands
        assert result["best_scripted"] == "sustainable"
        for label in ("trained", "saboteur", "greedy"):
            assert s[label]["reward"]["mean"] < s["sustainable"]["reward"]["mean"]
        assert s["trained"]["survival"]["lo"] == s["trained"]["survival"]["hi"] == 15


@pytest.mark.parametrize("name", ["train_saboteur_commons", "train_saboteur_commons_audited"])
def test_recorded_learned_saboteurs_reproduce_their_evaluation(name, tmp_path):
    """The committed models, evaluated again on the first two recorded seeds, give the
    recorded figures: the README's numbers come from these models and this code."""
    from baselines.scenario import load_scenario
    from baselines.train import evaluate

    folder = RESULTS / name
    recorded = json.loads((folder / "eval.json").read_text())
    scenario = load_scenario(ROOT / "configs" / f"{name}.yaml")
    again = evaluate(scenario, folder / "model.zip", tmp_path, seeds=2)
    assert again["seeds"] == recorded["seeds"][:2]
    for label, cand in again["candidates"].items():
        for run, old in zip(cand["runs"], recorded["candidates"][label]["runs"]):
            assert run == pytest.approx(old, nan_ok=True), label
