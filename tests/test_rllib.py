"""The RLlib backend: the learners-only PettingZoo view and a tiny training run on a local Ray.

The view's tests run everywhere; the training tests need the ``rllib`` extra and are skipped
without it.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

import envs
from baselines.rllib_backend import INSTALL_HINT, MODULE_PATH, require_rllib
from baselines.scenario import build, load_scenario
from baselines.scripted import make_policy
from envs.core.api import ActionError
from wrappers.flat import FlatLayout
from wrappers.learners import LearnersParallelEnv

ROOT = Path(__file__).resolve().parents[1]
STRICT = load_scenario(ROOT / "configs" / "strict_governance.yaml")


def strict_env(seed: int = 0, **overrides) -> LearnersParallelEnv:
    env, policies = build(STRICT, seed=seed, **overrides)
    return LearnersParallelEnv(env, "agent_6", policies)


def dilemma_env() -> LearnersParallelEnv:
    env = envs.make("dilemma-v0", n_agents=6, groups=("rl", "rl", "tft", "tft", "d", "d"),
                    network={"topology": "ring"}, n_epochs=2, steps_per_epoch=5)
    return LearnersParallelEnv(env, "rl", {"agent_2": make_policy("tit_for_tat", seed=1),
                                           "agent_3": make_policy("tit_for_tat", seed=1),
                                           "agent_4": make_policy("always_defect"),
                                           "agent_5": make_policy("always_defect")})


# ===================================================================== the learners' view

@pytest.mark.parametrize("make", [strict_env, dilemma_env], ids=["strict_governance", "dilemma"])
def test_parallel_api(make):
    env = make()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the API test reports some problems as warnings only
        parallel_api_test(env, num_cycles=10 * env.base.max_steps)
    assert env.agents == [] and env.base.t == env.base.max_steps  # it ran to truncation


def test_only_learners_are_agents_with_flat_views():
    env = dilemma_env()
    assert env.possible_agents == ["agent_0", "agent_1"]
    obs, infos = env.reset(seed=3)
    layout = FlatLayout(env.env)
    base = env.base
    want = layout.flatten(base.obs_arrays.named(), env.rows)
    for j, a in enumerate(env.possible_agents):
        assert env.observation_space(a).contains(obs[a])
        np.testing.assert_array_equal(obs[a], want[j])
        np.testing.assert_array_equal(infos[a]["action_mask"], base.obs_arrays.action_mask[j])
        assert infos[a]["action_mask"].shape == (int(base.nvec.sum()),)


def run_episode(env: LearnersParallelEnv, seed: int, action_seed: int):
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    trace = [np.stack(list(obs.values()))]
    while env.agents:
        actions = {a: rng.integers(0, env.nvec) for a in env.agents}
        obs, rewards, _, _, infos = env.step(actions)
        trace += [np.stack(list(obs.values())), np.array(list(rewards.values())),
                  np.array([i["invalid_actions"] for i in infos.values()])]
    return trace


def test_same_seed_same_episode_and_others_reseeded():
    short = {"n_epochs": 2, "steps_per_epoch": 6}
    a = run_episode(strict_env(**short), seed=5, action_seed=1)
    env = strict_env(**short)
    run_episode(env, seed=9, action_seed=2)  # the other policies' generators move on ...
    b = run_episode(env, seed=5, action_seed=1)  # ... and reset(seed) re-seeds them
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = run_episode(strict_env(**short), seed=6, action_seed=1)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c))


def test_bad_steps_are_refused():
    env = strict_env(n_epochs=1, steps_per_epoch=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step({"agent_6": np.zeros(len(env.nvec), dtype=np.int64)})
    env.reset(seed=0)
    with pytest.raises(ActionError, match="no action for agent_6"):
        env.step({})
    bad = np.zeros(len(env.nvec), dtype=np.int64)
    bad[1] = env.nvec[1]
    with pytest.raises(ActionError, match="dimension 1"):
        env.step({"agent_6": bad})
    with pytest.raises(ActionError, match="integers"):
        env.step({"agent_6": np.zeros(3)})
    with pytest.raises(ValueError, match="neither an agent"):
        LearnersParallelEnv(build(STRICT)[0], "nobody", make_policy("honest"))


def test_ray_is_not_imported_until_used():
    code = ("import sys, baselines.rllib_backend, wrappers.learners; "
            "sys.exit('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an interpreter without ray sees
    with pytest.raises(ImportError, match=r'pip install "distsafe\[rllib\]"') as err:
        require_rllib()
    assert INSTALL_HINT in str(err.value)


# ===================================================================== training on a local Ray

def tiny_run(out: Path, seed: int = 0) -> dict:
    from baselines.rllib_backend import train_rllib

    progress = []
    summary = train_rllib(lambda: build(STRICT, seed=0, n_epochs=2, steps_per_epoch=10),
                          ["agent_5", "agent_6"], None, total_timesteps=400, seed=seed,
                          hyperparams={"n_steps": 200, "batch_size": 64, "n_epochs": 2,
                                       "net_arch": [32, 32]},
                          out=out, on_progress=lambda done, total: progress.append(done))
    assert progress == [200, 400]
    return summary


def read_curve(path: Path) -> list[dict[str, float]]:
    with path.open() as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    pytest.importorskip("ray")
    out = tmp_path_factory.mktemp("rllib")
    return out, tiny_run(out)


def test_train_smoke_on_local_ray(trained):
    import ray

    out, summary = trained
    assert not ray.is_initialized()  # it started a local Ray and shut it down
    assert summary["timesteps"] == 400 and summary["iterations"] == 2
    assert summary["learners"] == ["agent_5", "agent_6"]
    rows = read_curve(out / "curve.csv")
    assert [r["timesteps"] for r in rows] == [200.0, 400.0]
    assert all(math.isfinite(r["episode_reward_mean"]) for r in rows)
    assert all(math.isclose(r["team_reward_mean"], 2 * r["episode_reward_mean"])
               for r in rows)
    assert (out / "checkpoint").joinpath(*MODULE_PATH).is_dir()
    meta = json.loads((out / "rllib.json").read_text())
    assert meta["layout"] == FlatLayout(build(STRICT)[0]).describe()
    assert meta["learners"] == ["agent_5", "agent_6"] and meta["seed"] == 0


@pytest.mark.filterwarnings("ignore:.*Overriding environment rllib:UserWarning")
def test_same_seed_same_curve(trained, tmp_path):
    out, _ = trained
    tiny_run(tmp_path)
    timing = ("seconds", "fps")
    first, again = read_curve(out / "curve.csv"), read_curve(tmp_path / "curve.csv")
    assert [{k: v for k, v in r.items() if k not in timing} for r in first] == \
        [{k: v for k, v in r.items() if k not in timing} for r in again]


def test_bad_settings_fail_before_ray_starts(tmp_path):
    ray = pytest.importorskip("ray")
    from baselines.rllib_backend import train_rllib

    def make():
        return build(STRICT, seed=0)

    with pytest.raises(ValueError, match="unknown hyperparameters n_stepz"):
        train_rllib(make, "agent_6", total_timesteps=10, hyperparams={"n_stepz": 1},
                    out=tmp_path)
    with pytest.raises(ValueError, match="unknown algorithm 'dqn'"):
        train_rllib(make, "agent_6", algorithm="dqn", total_timesteps=10, out=tmp_path)
    with pytest.raises(ValueError, match="neither an agent"):
        train_rllib(make, "nobody", total_timesteps=10, out=tmp_path)
    assert not ray.is_initialized()


def test_actions_from_checkpoint(trained):
    import torch
    from ray.rllib.core.columns import Columns

    from baselines.rllib_backend import RLlibActor

    actor = RLlibActor.load(trained[0])
    env, _ = build(STRICT, seed=0)
    env.reset(seed=4)
    assert actor.mismatch(env) is None
    assert "max_neighbors" in actor.mismatch(build(STRICT, max_neighbors=3)[0])
    base = env.unwrapped
    obs = FlatLayout(env).flatten(base.obs_arrays.named())
    mask = base.obs_arrays.action_mask
    acts = actor.act(obs)
    assert acts.shape == (len(obs), len(base.nvec)) and acts.dtype == np.int64
    # the deterministic action is RLlib's own for the module's logits
    module = actor.module
    with torch.no_grad():
        logits = module.forward_inference({Columns.OBS: torch.from_numpy(obs)})
    dist = module.get_inference_action_dist_cls().from_logits(logits[Columns.ACTION_DIST_INPUTS])
    np.testing.assert_array_equal(acts, dist.to_deterministic().sample().numpy())
    # masked choices honour the mask, sampled ones too
    bounds = np.concatenate([[0], np.cumsum(base.nvec)])
    for chosen in (actor.act(obs, mask), actor.act(obs, mask, deterministic=False,
                                                   rng=np.random.default_rng(0))):
        assert (chosen < base.nvec).all()
        assert mask[np.arange(len(obs))[:, None], bounds[:-1] + chosen].all()
    assert np.array_equal(actor.act(obs, mask, deterministic=False, rng=np.random.default_rng(1)),
                          actor.act(obs, mask, deterministic=False, rng=np.random.default_rng(1)))


def test_distsafe_train_backend_rllib(tmp_path, capsys):
    """`distsafe train --backend rllib`: the same config, trained on a local Ray."""
    pytest.importorskip("ray")
    import yaml

    from baselines.cli import main

    data = {
        "name": "tiny_rllib", "env": "sandbox-v0",
        "agents": [{"type": "honest", "count": 2}, {"type": "rl", "count": 2, "learn": True}],
        "network": {"topology": "complete"},
        "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 1},
        "governance": {"random_audit": {"probability": 0.3}},
        "train": {"algorithm": "maskable_ppo", "total_timesteps": 200, "seed": 2,
                  "net_arch": [16], "hyperparams": {"n_steps": 100, "batch_size": 50}},
    }
    cfg = tmp_path / "tiny_rllib.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    assert main(["train", str(cfg), "--backend", "rllib", "--out", str(out)]) == 0
    summary = json.loads((out / "train.json").read_text())
    assert summary["learners"] == ["agent_2", "agent_3"] and summary["timesteps"] >= 200
    rows = list(csv.DictReader((out / "rllib" / "curve.csv").open()))
    assert rows and all(math.isfinite(float(r["episode_reward_mean"])) for r in rows)
    assert "rllib: trained" in capsys.readouterr().out
    # the trained policy plays in a scenario as type: rl, masks honoured
    play = {k: v for k, v in data.items() if k != "train"}
    play["agents"] = [{"type": "honest", "count": 2},
                      {"type": "rl", "count": 2, "model": str(out / "rllib")}]
    from baselines.runner import rollout
    from baselines.scenario import parse_scenario

    env, policies = build(parse_scenario(play), seed=3)
    rows = rollout(env, policies, seed=3)
    assert len(rows) == 2 and all(r["invalid_actions"] == 0 for r in rows)
    bad = dict(data, train={**data["train"], "algorithm": "a2c"})
    cfg.write_text(yaml.safe_dump(bad, sort_keys=False))
    assert main(["train", str(cfg), "--backend", "rllib", "--out", str(tmp_path / "o2")]) == 2
    assert "train.algorithm: --backend rllib trains ppo" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()  # refused before any file was touched
