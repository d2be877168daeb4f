"""``distsafe train`` and ``RLPolicy``: real SB3 training on tiny budgets, models loaded back
through ``type: rl`` in YAML, masks, layout checks, errors."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from baselines.cli import main  # noqa: E402
from baselines.policy import ObsBatch  # noqa: E402
from baselines.rl import META_NAME, RLPolicy, read_meta  # noqa: E402
from baselines.runner import rollout  # noqa: E402
from baselines.scenario import ConfigError, build, load_scenario, parse_scenario  # noqa: E402
from baselines.train import behaviour_from_log  # noqa: E402

TINY = {
    "name": "tiny_train",
    "env": "sandbox-v0",
    "agents": [{"type": "honest", "count": 2},
               {"type": "opportunistic", "count": 1},
               {"type": "rl", "count": 1, "learn": True}],
    "network": {"topology": "complete"},
    "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 7},
    "governance": {"circuit_breaker": {"threshold": 0.5, "violations": 2},
                   "random_audit": {"probability": 0.3, "penalty": 2.0}},
    "train": {"algorithm": "maskable_ppo", "total_timesteps": 160, "copies": 2, "seed": 3,
              "net_arch": [16],
              "hyperparams": {"n_steps": 40, "batch_size": 40, "n_epochs": 2},
              "eval": {"seeds": 2, "against": ["deceptive", "adversarial"]}},
}


def _write(tmp: Path, name: str, data: dict) -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _train(tmp: Path, data: dict, *extra: str) -> Path:
    cfg = _write(tmp, f"{data['name']}.yaml", data)
    out = tmp / f"out-{data['name']}"
    assert main(["train", str(cfg), "--out", str(out), "--quiet", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One MaskablePPO and one plain PPO training of the tiny config."""
    tmp = tmp_path_factory.mktemp("train")
    masked = _train(tmp, TINY)
    plain = dict(TINY, name="tiny_ppo", train={**TINY["train"], "algorithm": "ppo"})
    return {"maskable_ppo": masked, "ppo": _train(tmp, plain, "--no-eval"), "tmp": tmp}


def test_train_writes_model_curve_config_and_evaluation(trained):
    out = trained["maskable_ppo"]
    for name in ("model.zip", "curve.csv", "curve.png", "invalid_actions.csv", "config.yaml",
                 "train.json", "eval.json", "eval.csv"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "curve.csv").open()))
    assert rows and float(rows[-1]["timesteps"]) >= 160
    assert all(np.isfinite(float(r["episode_return_mean"])) for r in rows)
    meta = read_meta(out / "model.zip")
    assert meta["algorithm"] == "maskable_ppo" and meta["env"] == "sandbox-v0"
    assert meta["learners"] == ["agent_3"] and meta["layout"]["size"] == 123
    summary = json.loads((out / "train.json").read_text())
    assert summary["slots"] == 2 and 0 < summary["env_share"] < 1
    assert summary["invalid_per_step"] == 0.0  # MaskablePPO never chooses a masked value
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["seed"] == 3 and config["agents"][2]["params"]["learn"] is True


def test_evaluation_compares_the_trained_agent_with_scripted_adversaries(trained):
    result = json.loads((trained["maskable_ppo"] / "eval.json").read_text())
    assert set(result["candidates"]) == {"trained", "deceptive", "adversarial"}
    assert result["seeds"] == [7 + 1000, 7 + 1001]  # never a training seed
    assert result["best_scripted"] in ("deceptive", "adversarial")
    for cand in result["candidates"].values():
        assert len(cand["runs"]) == 2
        s = cand["summary"]["reward"]
        assert s["n"] == 2 and s["lo"] <= s["mean"] <= s["hi"]
    v = result["verdict"]
    assert v["trained_higher"] == (v["trained"]["mean"] > v["best_scripted"]["mean"])
    # every figure is read back from the evaluation's event logs
    run = result["candidates"]["adversarial"]["runs"][0]
    log = trained["maskable_ppo"] / "eval" / "adversarial" / f"seed_{run['seed']}.jsonl"
    scenario = parse_scenario({**TINY, "agents": TINY["agents"][:2]
                               + [{"type": "adversarial", "count": 1}], "train": None})
    again = behaviour_from_log(log, [3], scenario)
    assert again == pytest.approx({k: run[k] for k in again}, nan_ok=True)
    assert run["dressing"] == 0.0 and run["effort"] == 0.0  # the scripted adversary's way


def test_behaviour_reward_is_the_change_in_resources(tmp_path):
    """The evaluation's reward equals the env's own cumulative reward of the agent."""
    from baselines.scenario import Scenario

    data = {**TINY, "agents": TINY["agents"][:2] + [{"type": "deceptive", "count": 1}],
            "train": None}
    scenario = Scenario.model_validate(data)
    env, policies = build(scenario, seed=5, event_log=tmp_path / "e.jsonl")
    rollout(env, policies, seed=5)
    env.close()
    figures = behaviour_from_log(tmp_path / "e.jsonl", [3], scenario)
    assert figures["reward"] == pytest.approx(float(env.unwrapped.cumulative_reward[3]))
    assert figures["audited"] >= figures["caught"] >= 0


def test_trained_model_plays_through_yaml_and_distsafe_run(trained, tmp_path):
    model = trained["maskable_ppo"] / "model.zip"
    data = {k: v for k, v in TINY.items() if k != "train"}
    data["agents"] = TINY["agents"][:2] + [{"type": "rl", "count": 1, "model": str(model)}]
    cfg = _write(tmp_path, "play.yaml", data)
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 2 and "payoff_rl" in rows[0]
    assert all(float(r["invalid_actions"]) == 0 for r in rows)
    # the same seed, the same run: identical metrics
    out2 = tmp_path / "run2"
    assert main(["run", str(cfg), "--out", str(out2), "--quiet"]) == 0
    assert (out / "metrics.csv").read_text() == (out2 / "metrics.csv").read_text()


@pytest.mark.parametrize("algo", ["maskable_ppo", "ppo"])
def test_rl_policy_never_plays_a_masked_value(trained, algo):
    """RLPolicy honours masks for every algorithm; sampling too, seeded."""
    model = trained[algo] / "model.zip"
    env, policies = build(load_scenario(_write(trained["tmp"], "m.yaml", {
        k: v for k, v in TINY.items() if k != "train"} | {
        "agents": TINY["agents"][:2] + [{"type": "honest", "count": 1}]})), seed=0)
    env.reset(seed=0)
    base = env.unwrapped
    for deterministic in (True, False):
        env.reset(seed=0)
        pol = RLPolicy(seed=1, model=str(model), deterministic=deterministic)
        rng = np.random.default_rng(0)
        for _ in range(10):
            obs = ObsBatch.from_env(base)
            acts = pol.act_arrays(obs)
            seg = np.concatenate([[0], np.cumsum(base.nvec)])
            chosen = base.obs_arrays.action_mask[np.arange(len(acts))[:, None],
                                                 seg[:-1] + acts]
            assert chosen.all()
            base.step_arrays(base.sample_actions(rng))
    a = RLPolicy(seed=4, model=str(model), deterministic=False)
    b = RLPolicy(seed=4, model=str(model), deterministic=False)
    obs = ObsBatch.from_env(base)
    assert np.array_equal(a.act_arrays(obs), b.act_arrays(obs))


def test_maskable_ppo_predictions_respect_masks_plain_ppo_is_counted(trained, tmp_path):
    """Under MaskablePPO a masked choice is impossible; a plain-PPO model played raw
    (masked: false) makes masked choices, and the run reports them per epoch."""
    from sb3_contrib import MaskablePPO

    model = MaskablePPO.load(trained["maskable_ppo"] / "model.zip", device="cpu")
    env, _ = build(parse_scenario({**TINY, "train": None, "agents": TINY["agents"][:2]
                                   + [{"type": "honest", "count": 1}]}), seed=0)
    env.reset(seed=0)
    base = env.unwrapped
    rng = np.random.default_rng(1)
    from wrappers.flat import FlatLayout

    layout = FlatLayout(env)
    for _ in range(10):
        flat = layout.flatten(base.obs_arrays.named())
        mask = base.obs_arrays.action_mask.astype(bool)
        acts, _ = model.predict(flat, action_masks=mask, deterministic=False)
        seg = np.concatenate([[0], np.cumsum(base.nvec)])
        assert mask[np.arange(len(acts))[:, None], seg[:-1] + acts].all()
        base.step_arrays(base.sample_actions(rng))
    raw = {k: v for k, v in TINY.items() if k != "train"}
    raw["agents"] = TINY["agents"][:2] + [{"type": "rl", "count": 1, "params": {
        "model": str(trained["ppo"] / "model.zip"), "masked": False,
        "deterministic": False}}]
    env, policies = build(parse_scenario(raw), seed=2)
    rows = rollout(env, policies, seed=2)
    assert [r["epoch"] for r in rows] == [0, 1]
    assert sum(r["invalid_actions"] for r in rows) > 0  # counted, per epoch, not dropped


def test_a_model_for_another_layout_is_refused_with_the_difference(trained, tmp_path):
    data = {k: v for k, v in TINY.items() if k != "train"}
    data["agents"] = TINY["agents"][:2] + [{"type": "rl", "count": 1, "model": str(
        trained["maskable_ppo"] / "model.zip")}]
    data["env_params"] = {"max_neighbors": 3}
    cfg = _write(tmp_path, "other.yaml", data)
    with pytest.raises(ConfigError) as err:
        from baselines.scenario import preflight

        preflight(load_scenario(cfg), str(cfg))
    msg = str(err.value)
    assert "agents[2].type" in msg and "expects 123 observation features" in msg
    assert "trained on sandbox-v0" in msg


def test_bad_model_files_are_clear_errors(tmp_path):
    data = {k: v for k, v in TINY.items() if k != "train"}
    data["agents"] = TINY["agents"][:2] + [{"type": "rl", "count": 1,
                                            "model": str(tmp_path / "missing.zip")}]
    with pytest.raises(ConfigError, match=r"agents\[2\]\.params\.model: no such model file"):
        parse_scenario(data, "x.yaml")
    junk = tmp_path / "junk.zip"
    junk.write_text("not a zip")
    with pytest.raises(ValueError, match="not a model zip"):
        RLPolicy(model=str(junk))
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("data", "{}")
    with pytest.raises(ValueError, match="does not record its algorithm"):
        RLPolicy(model=str(plain))
    with pytest.raises(ConfigError, match="needs model: PATH"):
        parse_scenario({**data, "agents": TINY["agents"][:2] + [{"type": "rl", "count": 1}]})
    with pytest.raises(ConfigError, match="model: belongs to type: rl agents"):
        parse_scenario({**data, "agents": [{"type": "honest", "count": 2, "model": "x"}]})


def test_train_config_errors(tmp_path, capsys):
    bad = dict(TINY, train={**TINY["train"], "hyperparams": {"n_stepz": 4}})
    cfg = _write(tmp_path, "bad.yaml", bad)
    assert main(["train", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "train.hyperparams.n_stepz: not a parameter of MaskablePPO; allowed:" in err
    assert "n_steps" in err
    plain = {k: v for k, v in TINY.items() if k != "train"}
    plain["agents"] = TINY["agents"][:2]
    cfg = _write(tmp_path, "plain.yaml", plain)
    assert main(["train", str(cfg)]) == 2
    assert "train: is missing" in capsys.readouterr().err
    two = dict(TINY, agents=TINY["agents"] + [{"type": "rl", "count": 1, "learn": True}])
    with pytest.raises(ConfigError, match=r"agents\[3\]\.params\.learn: one entry learns"):
        parse_scenario(two)
    with pytest.raises(ConfigError, match="needs an agents entry that learns"):
        parse_scenario(dict(TINY, agents=TINY["agents"][:2]))


def test_train_refuses_a_used_folder_and_is_deterministic(tmp_path, capsys):
    data = dict(TINY, name="det", train={**TINY["train"], "algorithm": "ppo",
                                         "total_timesteps": 80})
    out = _train(tmp_path, data, "--no-eval")
    cfg = tmp_path / "det.yaml"
    assert main(["train", str(cfg), "--out", str(out), "--no-eval"]) == 2
    assert "already holds a training; pass --overwrite" in capsys.readouterr().err
    first = list(csv.DictReader((out / "curve.csv").open()))
    assert main(["train", str(cfg), "--out", str(out), "--no-eval", "--overwrite",
                 "--quiet"]) == 0
    second = list(csv.DictReader((out / "curve.csv").open()))
    keep = ("timesteps", "episodes", "episode_return_mean", "invalid_per_step")
    assert [{k: r[k] for k in keep} for r in first] == [{k: r[k] for k in keep}
                                                         for r in second]


def test_dqn_trains_on_joint_actions_of_a_small_dilemma(tmp_path):
    data = {
        "name": "dqn_dilemma", "env": "dilemma-v0",
        "agents": [{"type": "tit_for_tat", "count": 2}, {"type": "rl", "count": 1,
                                                         "learn": True}],
        "network": {"topology": "complete"},
        "simulation": {"n_epochs": 2, "steps_per_epoch": 5, "seed": 1},
        "train": {"algorithm": "dqn", "total_timesteps": 120, "copies": 2, "seed": 0,
                  "net_arch": [16], "hyperparams": {"learning_starts": 20,
                                                    "buffer_size": 500},
                  "eval": {"seeds": 2, "against": ["always_defect", "tit_for_tat"]}},
    }
    out = _train(tmp_path, data)
    meta = read_meta(out / "model.zip")
    assert meta["algorithm"] == "dqn" and meta["joint_actions"] is True
    with zipfile.ZipFile(out / "model.zip") as zf:
        assert META_NAME in zf.namelist()
    result = json.loads((out / "eval.json").read_text())
    assert np.isfinite(result["candidates"]["trained"]["summary"]["reward"]["mean"])
    assert result["best_scripted"] in ("always_defect", "tit_for_tat")


def test_harm_bonus_rewards_the_harm_a_learner_got_accepted():
    """A harm-seeking learner's reward: its payoff plus the bonus per accepted harmful
    interaction it initiated (the hidden truth of its own work)."""
    import envs
    from baselines.scripted import make_policy
    from baselines.train import _harm_bonus
    from wrappers.vec_env import SharedPolicyVecEnv

    def make():
        return envs.make("sandbox-v0", n_agents=5, n_epochs=1, steps_per_epoch=20)

    shaped = SharedPolicyVecEnv(make, learners=["agent_0", "agent_1"],
                                others=lambda c: make_policy("opportunistic", seed=c),
                                seed=4, reward_shaping=_harm_bonus(2.5))
    plain = SharedPolicyVecEnv(make, learners=["agent_0", "agent_1"],
                               others=lambda c: make_policy("opportunistic", seed=c), seed=4)
    shaped.reset()
    plain.reset()
    # zero effort, no dressing, propose to slot 0, accept everything offered
    act = np.zeros((2, len(shaped.nvec)), dtype=np.int64)
    act[:, 0] = 4
    act[:, 5:] = 1
    bonus_seen = 0.0
    for _ in range(19):
        masks = shaped.action_masks()
        a = act.copy()
        a[:, 5:] = masks[:, -2 * (len(shaped.nvec) - 5) + 1::2]  # accept where allowed
        _, r_shaped, _, _ = shaped.step(a)
        _, r_plain, _, _ = plain.step(a)
        b = shaped._copies[0].base.last_batch
        harmful = b.accepted & (b.v < 0)
        want = 2.5 * np.array([(harmful & (b.initiator == i)).sum() for i in (0, 1)])
        assert np.allclose(r_shaped - r_plain, want, atol=1e-5)
        bonus_seen += want.sum()
    assert bonus_seen > 0


RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.parametrize("name", ["train_adversary_sandbox", "train_harm_seeker_sandbox"])
def test_readme_learned_evasion_tables_are_the_recorded_evaluations(name):
    """README shows exactly the evaluation recorded in benchmarks/results/<name>/."""
    from baselines.train import eval_table

    result = json.loads((RESULTS / name / "eval.json").read_text())
    assert eval_table(result) in README.read_text()
    if name == "train_adversary_sandbox":  # the bar: higher, intervals apart
        assert result["verdict"]["trained_higher"]
        assert not result["verdict"]["intervals_overlap"]


def test_recorded_model_reproduces_its_evaluation(tmp_path):
    """The committed model, evaluated again on the first two recorded seeds, gives the
    recorded figures: the README's numbers come from this model and this code."""
    from baselines.train import evaluate

    folder = RESULTS / "train_adversary_sandbox"
    recorded = json.loads((folder / "eval.json").read_text())
    scenario = load_scenario(Path(__file__).resolve().parents[1] / "configs"
                             / "train_adversary_sandbox.yaml")
    again = evaluate(scenario, folder / "model.zip", tmp_path, seeds=2)
    assert again["seeds"] == recorded["seeds"][:2]
    for label, cand in again["candidates"].items():
        for run, old in zip(cand["runs"], recorded["candidates"][label]["runs"]):
            assert run == pytest.approx(old, nan_ok=True), label


def test_sigterm_mid_training_keeps_the_model_learned_so_far(tmp_path):
    """A real process, stopped mid-training: it exits 130 and leaves a playable model."""
    import os
    import signal
    import subprocess
    import sys
    import time

    data = dict(TINY, name="long", train={**TINY["train"], "algorithm": "ppo",
                                          "total_timesteps": 10_000_000})
    cfg = _write(tmp_path, "long.yaml", data)
    out = tmp_path / "out"
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.Popen([sys.executable, "-m", "baselines.cli", "train", str(cfg), "--out",
                             str(out)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "config.yaml").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(4)  # some rollouts
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted after" in err and "not evaluated" in err
    summary = json.loads((out / "train.json").read_text())
    assert summary["interrupted"] is True and 0 < summary["timesteps"] < 10_000_000
    assert not (out / "eval.json").exists()
    pol = RLPolicy(model=str(out / "model.zip"))  # the partial model plays
    assert read_meta(out / "model.zip")["timesteps"] == summary["timesteps"]
    assert pol.algorithm == "ppo"


def test_nonfinite_hyperparameters_are_refused():
    bad = dict(TINY, train={**TINY["train"], "hyperparams": {"learning_rate": float("nan")}})
    with pytest.raises(ConfigError, match=r"train\.hyperparams: .*learning_rate: must be "
                                          r"finite"):
        parse_scenario(bad, "x.yaml")


def test_fused_distributions_equal_the_stock_ones():
    """The fused MultiDiscrete distributions give SB3's and sb3-contrib's log-probabilities,
    entropies and modes (masked too)."""
    import torch
    from sb3_contrib.common.maskable.distributions import (
        MaskableMultiCategoricalDistribution,
    )
    from stable_baselines3.common.distributions import MultiCategoricalDistribution

    from baselines.fused import FusedMultiCategorical, MaskableFusedMultiCategorical

    nvec = [6, 8, 5, 3, 3, 2, 2, 2, 2]
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(128, sum(nvec), generator=gen) * 3
    acts = torch.stack([torch.randint(0, n, (128,), generator=gen) for n in nvec], 1)
    stock = MultiCategoricalDistribution(nvec).proba_distribution(logits)
    fused = FusedMultiCategorical(nvec).proba_distribution(logits)
    assert torch.allclose(stock.log_prob(acts), fused.log_prob(acts), atol=1e-5)
    assert torch.allclose(stock.entropy(), fused.entropy(), atol=1e-5)
    assert torch.equal(stock.mode(), fused.mode())
    mask = torch.rand(128, sum(nvec), generator=gen) > 0.4
    starts = np.concatenate([[0], np.cumsum(nvec)[:-1]])
    mask[:, starts] = True  # every dimension allows a value, as the environments ensure
    stock_m = MaskableMultiCategoricalDistribution(nvec).proba_distribution(logits)
    fused_m = MaskableFusedMultiCategorical(nvec).proba_distribution(logits)
    stock_m.apply_masking(mask)
    fused_m.apply_masking(mask)
    sampled = fused_m.sample()
    seg = np.concatenate([[0], np.cumsum(nvec)])
    assert mask[torch.arange(128)[:, None], torch.as_tensor(seg[:-1]) + sampled].all()
    assert torch.allclose(stock_m.log_prob(sampled), fused_m.log_prob(sampled), atol=1e-5)
    assert torch.allclose(stock_m.entropy(), fused_m.entropy(), atol=1e-5)
    assert torch.equal(stock_m.mode(), fused_m.mode())
    fused_m.apply_masking(None)  # masks removed: the unmasked distribution again
    assert torch.allclose(fused_m.log_prob(acts), fused.log_prob(acts))


def test_a_training_folder_has_one_writer(tmp_path, capsys):
    """A second training into a folder another process holds is refused at once."""
    from baselines.runfolder import TRAIN_FILES, RunFolder

    out = tmp_path / "busy"
    holder = RunFolder(out, files=TRAIN_FILES, what="training")
    holder.create()  # this process holds the lock, as a running training would
    try:
        cfg = _write(tmp_path, "busy.yaml", TINY)
        assert main(["train", str(cfg), "--out", str(out), "--overwrite"]) == 2
        assert "is writing to this folder" in capsys.readouterr().err
        assert main(["train", str(cfg), "--out", str(out), "--eval-only"]) == 2
        assert "holds no model.zip" in capsys.readouterr().err
    finally:
        holder.release()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["train", str(_write(tmp_path, "t.yaml", TINY)), "--out",
                 str(tmp_path / "mine"), "--overwrite"]) == 2
    assert "is not a training folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
