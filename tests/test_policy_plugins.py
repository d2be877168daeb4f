"""Users' own policies: by import path (``package.module:ClassName``) or installed entry point
(group ``distsafe.policies``), validated and built exactly like the scripted ones."""

from __future__ import annotations

import re
import sys
import textwrap
import warnings

import numpy as np
import pytest

from baselines.policy import Policy
from baselines.runner import rollout
from baselines.scenario import (
    ConfigError,
    _derive_seed,
    build,
    load_scenario,
    parse_scenario,
    preflight,
)
from baselines.scripted import (
    POLICIES,
    PolicyLookupError,
    available_policies,
    make_policy,
    resolve_policy,
)

MODULE = '''
"""A user's policies, outside the distsafe package."""

import numpy as np
from pydantic import Field

from baselines.policy import ObsBatch, Policy
from envs.sandbox import INBOX_FEATURES

_P = INBOX_FEATURES.index("p")


class Cautious(Policy):
    """Proposes collaborations with full effort; accepts proposals with p >= min_p."""

    name = "cautious"

    class Params(Policy.Params):
        propose_prob: float = Field(0.3, ge=0, le=1)
        min_p: float = Field(0.8, ge=0, le=1)
        levels: tuple[int, ...] = (0, 1)

    def act_arrays(self, obs: ObsBatch) -> np.ndarray:
        n, nvec = len(obs), obs.nvec
        act = np.zeros((n, len(nvec)), dtype=np.int64)
        act[:, 0] = (obs.mask(0)[:, 1] == 1) & (self.rng.random(n) < self.params.propose_prob)
        act[:, 1] = np.where(obs.mask(1) == 1, self.rng.random((n, nvec[1])), -1).argmax(1)
        act[:, 2] = nvec[2] - 1
        allowed = np.stack([obs.mask(5 + m)[:, 1] for m in range(len(nvec) - 5)], 1) == 1
        act[:, 5:] = allowed & (obs.inbox[:, :, _P] >= self.params.min_p)
        return act


class Nameless(Cautious):
    """Inherits a name? No: sets none of its own, so its label is its class name."""

    name = Policy.name


class Exploding(Cautious):
    def __init__(self, seed=None, **params):
        raise RuntimeError("no GPU here")


def helper():
    return 1


class NotAPolicy:
    pass
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    folder = tmp_path / "pkgroot"
    folder.mkdir()
    (folder / "my_pols.py").write_text(MODULE)
    (folder / "broken_pols.py").write_text("def oops(:\n    pass\n")
    (folder / "needs_dep.py").write_text("import not_installed_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in ("my_pols", "broken_pols", "needs_dep"):
        sys.modules.pop(name, None)


def _scenario_yaml(agent_type: str) -> str:
    return ("name: mine\nagents:\n  - {type: honest, count: 3}\n"
            f"  - type: '{agent_type}'\n    count: 3\n"
            "  - {type: deceptive, count: 2}\n"
            "simulation: {n_epochs: 2, steps_per_epoch: 5, seed: 4}\n")


def _load(tmp_path, text: str):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    return load_scenario(path), str(path)


def test_import_path_policy_runs_like_a_builtin(tmp_path, user_module):
    text = textwrap.dedent("""\
        name: mine
        agents:
          - {type: honest, count: 3}
          - type: my_pols:Cautious
            count: 3
            params: {propose_prob: 0.4, min_p: 0.85, levels: [1, 2, 3]}
          - {type: deceptive, count: 2}
        simulation: {n_epochs: 2, steps_per_epoch: 5, seed: 4}
        """)
    scenario, source = _load(tmp_path, text)
    assert scenario.agents[1].params == {"propose_prob": 0.4, "min_p": 0.85,
                                         "levels": (1, 2, 3)}
    assert scenario.agent_groups() == ["honest"] * 3 + ["cautious"] * 3 + ["deceptive"] * 2
    preflight(scenario, source)
    env, policies = build(scenario)
    pol = policies["agent_3"]
    assert type(pol).__name__ == "Cautious" and pol.params.min_p == 0.85
    assert policies["agent_4"] is pol and policies["agent_5"] is pol
    assert pol._seed == _derive_seed(4, 1)  # seeded like a built-in in entry 1
    assert env.config.groups[3:6] == ("cautious",) * 3
    rows = rollout(env, policies, seed=4)
    assert len(rows) == 2 and "payoff_cautious" in rows[-1]
    assert np.isfinite(rows[-1]["payoff_cautious"])
    # the same again: deterministic
    env2, policies2 = build(scenario)
    assert rollout(env2, policies2, seed=4)[-1]["welfare"] == rows[-1]["welfare"]


def test_group_label_is_the_class_name_without_a_name(user_module):
    s = parse_scenario({"name": "x", "agents": [{"type": "my_pols:Nameless", "count": 2}],
                        "simulation": {"n_epochs": 1, "steps_per_epoch": 1}}, "x.yaml")
    assert s.agent_groups() == ["Nameless", "Nameless"]
    assert s.agents[0].label == "Nameless"


def test_params_are_validated_like_builtins(user_module):
    def error(params):
        with pytest.raises(ConfigError) as info:
            parse_scenario({"name": "x", "simulation": {"n_epochs": 1, "steps_per_epoch": 1},
                            "agents": [{"type": "my_pols:Cautious", "count": 2,
                                        "params": params}]}, "bad.yaml")
        return str(info.value).split("\n")

    assert error({"min_p": 2}) == [
        "bad.yaml: agents[0].params.min_p: Input should be less than or equal to 1 (got 2)"]
    assert error({"min_p": "0.5", "propose_prob": float("nan")}) == [
        "bad.yaml: agents[0].params.propose_prob: Input should be a finite number (got nan)",
        "bad.yaml: agents[0].params.min_p: Input should be a valid number (got '0.5')"]
    assert error({"bogus": 1}) == ["bad.yaml: agents[0].params.bogus: unknown key; allowed: "
                                   "levels, min_p, propose_prob"]


@pytest.mark.parametrize(("agent_type", "pattern"), [
    ("no_such_module_abc:Thing", r"^agents\[1\]\.type: cannot import module "
     r"'no_such_module_abc' for agent type 'no_such_module_abc:Thing': no such module in the "
     r"current folder or on PYTHONPATH$"),
    ("broken_pols:Thing", r"^agents\[1\]\.type: cannot import module 'broken_pols' for agent "
     r"type 'broken_pols:Thing': SyntaxError: "),
    ("needs_dep:Thing", r"^agents\[1\]\.type: cannot import module 'needs_dep' for agent type "
     r"'needs_dep:Thing': ModuleNotFoundError: No module named 'not_installed_dependency_xyz'"),
    ("my_pols:Cautios", r"^agents\[1\]\.type: 'my_pols:Cautios': 'my_pols' has no attribute "
     r"'Cautios'; it defines: Cautious, Exploding, Nameless$"),
    ("my_pols:helper", r"^agents\[1\]\.type: 'my_pols:helper' is a function, not a subclass "
     r"of baselines\.policy\.Policy$"),
    ("my_pols:NotAPolicy", r"^agents\[1\]\.type: 'my_pols:NotAPolicy' is the class "
     r"NotAPolicy, not a subclass of baselines\.policy\.Policy$"),
    ("my_pols:Cautious.Params", r"is the class Params, not a subclass"),
    ("my_pols:Cautious:Extra", r"^agents\[1\]\.type: agent type 'my_pols:Cautious:Extra' is "
     r"not an import path; expected package\.module:ClassName$"),
    ("my_pols:", r"not an import path; expected package\.module:ClassName"),
    ("cautious", r"^agents\[1\]\.type: unknown agent type 'cautious'; allowed: adversarial, "
     r"deceptive, honest, opportunistic"),
])
def test_bad_agent_types_are_config_errors_at_their_path(tmp_path, user_module, agent_type,
                                                         pattern):
    path = tmp_path / "scenario.yaml"
    path.write_text(_scenario_yaml(agent_type))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    lines = str(info.value).split("\n")
    assert len(lines) == 1
    assert info.value.path == "agents[1].type"
    assert re.search(pattern, lines[0].removeprefix(f"{path}: ")), lines[0]


def test_a_policy_that_fails_to_construct_is_reported_by_preflight(user_module):
    s = parse_scenario({"name": "x", "agents": [{"type": "honest", "count": 1},
                                                {"type": "my_pols:Exploding", "count": 1}],
                        "simulation": {"n_epochs": 1, "steps_per_epoch": 1}}, "x.yaml")
    with pytest.raises(ConfigError) as info:
        preflight(s, "x.yaml")
    assert str(info.value) == ("x.yaml: agents[1].type: constructing 'my_pols:Exploding' "
                               "failed: RuntimeError: no GPU here")


def test_module_in_the_current_folder_is_found(tmp_path, monkeypatch):
    folder = tmp_path / "here"
    folder.mkdir()
    (folder / "cwd_pols_mod.py").write_text(MODULE)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(folder))])
    try:
        cls = resolve_policy("cwd_pols_mod:Cautious")
        assert cls.name == "cautious" and issubclass(cls, Policy)
    finally:
        sys.modules.pop("cwd_pols_mod", None)


def test_builtins_resolve_by_name_and_by_path():
    assert resolve_policy("honest") is POLICIES["honest"]
    assert resolve_policy("baselines.scripted:Deceptive") is POLICIES["deceptive"]
    assert make_policy("baselines.scripted:Honest", seed=0).params.propose_prob == 0.5
    with pytest.raises(PolicyLookupError, match="allowed: adversarial, deceptive, honest"):
        resolve_policy("saint")
    assert issubclass(PolicyLookupError, ValueError)


# --------------------------------------------------------------------------- entry points
@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "plugin_pols_mod.py").write_text(MODULE)
    info = site / "distsafe_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: distsafe-demo-plugin\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[distsafe.policies]\n"
        "demo_cautious = plugin_pols_mod:Cautious\n"
        "demo_broken = plugin_pols_mod:Missing\n"
        "demo_function = plugin_pols_mod:helper\n"
        "honest = plugin_pols_mod:Cautious\n")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("plugin_pols_mod", None)


def test_available_policies_lists_builtins_and_installed_plugins(installed_plugin):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = available_policies()
    assert set(POLICIES) <= set(found)
    assert found["demo_cautious"].__name__ == "Cautious"
    assert found["honest"] is POLICIES["honest"]  # a plug-in cannot take a built-in's name
    assert "demo_broken" not in found and "demo_function" not in found
    assert {str(w.message).split("'")[1] for w in caught} == {"demo_broken", "demo_function"}


def test_installed_plugin_runs_from_a_scenario(installed_plugin):
    s = parse_scenario({"name": "x", "agents": [{"type": "demo_cautious", "count": 2,
                                                 "params": {"min_p": 0.5}},
                                                {"type": "honest", "count": 2}],
                        "simulation": {"n_epochs": 1, "steps_per_epoch": 4, "seed": 1}},
                       "x.yaml")
    assert s.agent_groups() == ["cautious", "cautious", "honest", "honest"]
    preflight(s, "x.yaml")
    env, policies = build(s)
    assert rollout(env, policies, seed=1)[-1]["epoch"] == 0


def test_broken_plugins_are_config_errors(installed_plugin):
    with pytest.raises(PolicyLookupError, match=r"cannot load policy 'demo_broken' \(entry "
                                                r"point 'plugin_pols_mod:Missing'\): "
                                                r"AttributeError"):
        resolve_policy("demo_broken")
    with pytest.raises(PolicyLookupError, match="is a function, not a subclass"):
        resolve_policy("demo_function")
    with pytest.raises(PolicyLookupError, match=r"allowed: adversarial, deceptive, "
                                                r"demo_broken, demo_cautious, demo_function"):
        resolve_policy("nope")
