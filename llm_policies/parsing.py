"""Reading an LLM's reply into an action, tolerantly, with documented safe fallbacks.

:func:`parse_reply` finds the first JSON object in the reply (bare, inside a ```` ```json ````
fence or surrounded by prose; a trailing comma is forgiven), then reads it **field by field**
against the view's action layout (``view["actions"]``) and mask (``view["mask"]``): labels
match case-insensitively, numbers go to the nearest level of the layout, agent names map to
slots through the view's neighbours and inbox. A field that is missing, malformed or not
allowed now takes its **safe value**, the reply is marked ``fallback`` and the problem is
recorded with the field's name; the other fields keep what the model chose.

Safe values (what a fallback plays):

* **Sandbox.** ``kind`` -> ``"none"`` (no proposal), every ``respond`` -> ``reject``. A
  proposal whose ``target`` or ``effort`` is missing or invalid is **cancelled** (kind
  ``"none"``): whom to work with and how well are not guessed. A missing or invalid
  ``dressing`` or ``transfer`` takes the lowest level (no polish, no payment) and the
  proposal stands. With ``kind "none"`` the proposal fields are not read.
* **Dilemma.** ``C`` (cooperate) for every neighbour played with. C is not automatically
  safe: it leaves the agent open to the sucker's payoff. It is chosen because (1) ``0 = C`` is
  the environment's no-op for slots without a game, so the fallback and the masked value
  agree; (2) a parse failure must not *manufacture* defections: the platform labels a D as
  harm (toxicity, reputation) and reciprocating neighbours (TFT, GRIM) would punish it for
  the rest of the episode, so a broken reply would be read as the model's hostility; (3) every
  fallback is counted (``fallback``, the policy's usage), so analyses can separate what the
  model chose from what the parser supplied. Read cooperation rates together with fallback
  rates.
* **Commons.** Take nothing, report what was taken, abstain on every vote, accuse nobody,
  send nothing; amounts snap to the nearest ``extraction_step`` level, votes to the nearest
  value of the vote grid, and a message whose recipient is invalid is not sent (see
  :mod:`llm_policies.commons`, which reads the reply and its free-text ``message``).
* **Any other layout.** The first value of each dimension if the mask allows it, else the
  first allowed value.

Example:
    >>> view = {"actions": {"move_0": ["C", "D"], "move_1": ["C", "D"]},
    ...         "mask": {"move_0": [0, 1], "move_1": [0, 1]},
    ...         "neighbors": [{"slot": 0, "agent": "agent_1"}, {"slot": 1, "agent": "agent_2"}]}
    >>> p = parse_reply('Sure! ```json\\n{"moves": {"agent_1": "d"}, "reasoning": "r"}\\n```',
    ...                 view)
    >>> p.action.tolist(), p.fallback, p.fields
    ([1, 0], True, ('moves.agent_2',))
    >>> p.problem
    'moves.agent_2: missing; played C'
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llm_policies.prompts import allowed, check_view, inbox_keys, variant_of

__all__ = ["MAX_REASONING", "Parsed", "extract_json", "parse_reply", "safe_action"]

MAX_REASONING = 2000
"""The longest reasoning kept (characters)."""

_MAX_TEXT = 100_000   # characters of a reply searched for a JSON object
_MAX_STARTS = 64      # "{" positions tried
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


@dataclass(frozen=True)
class Parsed:
    """A reply read into an action.

    Attributes:
        action: ``int64`` array, one value index per action dimension of the view.
        reasoning: The reply's ``reasoning`` (``""`` if none; at most :data:`MAX_REASONING`
            characters).
        fallback: Whether any field took its safe value.
        problem: What was wrong, field by field (``None`` when nothing was).
        fields: The fields that fell back (``"reply"`` when no JSON object was found;
            ``"moves.agent_3"``, ``"respond.agent_2"`` for entries).
        message: The free text to send with the action (the commons): ``{"text": str,
            "to": agent name or None for a public post}``, or ``None``.
    """

    action: np.ndarray
    reasoning: str
    fallback: bool
    problem: str | None
    fields: tuple[str, ...] = field(default=())
    message: dict[str, Any] | None = None


# ---------------------------------------------------------------------- JSON extraction
def _balanced(text: str, start: int) -> str | None:
    depth, in_str, escaped = 0, False, False
    for k in range(start, len(text)):
        ch = text[k]
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:k + 1]
    return None


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        pass
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", raw))
    except ValueError:
        pass
    try:  # single-quoted, Python-style dicts ({'kind': 'none'})
        py = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False",
                                                 re.sub(r"\bnull\b", "None", raw)))
        return ast.literal_eval(py)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def extract_json(text: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The first balanced JSON object in ``text`` that parses, and ``None``; or ``None`` and
    why not.

    Example:
        >>> extract_json('I think {"a": {"b": "}"}, } is best')
        ({'a': {'b': '}'}}, None)
        >>> extract_json("no braces here")
        (None, 'no JSON object in the reply')
    """
    if not isinstance(text, str) or not text.strip():
        return None, "empty reply"
    text = text[:_MAX_TEXT]
    start, tried, saw_brace = text.find("{"), 0, False
    while start >= 0 and tried < _MAX_STARTS:
        saw_brace = True
        tried += 1
        raw = _balanced(text, start)
        if raw is not None:
            obj = _loads(raw)
            if isinstance(obj, dict):
                return obj, None
        start = text.find("{", start + 1)
    if not saw_brace:
        return None, "no JSON object in the reply"
    return None, "no JSON object in the reply parses (malformed JSON)"


# ---------------------------------------------------------------------- values
def _is_number(v: Any) -> bool:
    """A finite int or float (not a bool); an int too large for a float is not one (JSON
    allows any number of digits, and ``math.isfinite`` would raise on it)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _as_number(v: Any) -> float | None:
    if _is_number(v):
        return float(v)
    if isinstance(v, str):
        s = v.strip().lower()
        scale = 1.0
        if s.endswith("%"):
            s, scale = s[:-1].strip(), 0.01
        try:
            x = float(s) * scale
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def _show(values: Sequence[Any]) -> str:
    return ", ".join(json.dumps(v, ensure_ascii=False) for v in values)


def _short(v: Any) -> str:
    text = json.dumps(v, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _choose(value: Any, labels: Sequence[Any], ok: Sequence[int],
            synonyms: Mapping[str, int] | None = None) -> tuple[int | None, str | None]:
    """The index of ``value`` among ``labels`` (allowed: ``ok``), or None and why."""
    if value is None:
        return None, "missing"
    numeric = all(_is_number(x) for x in labels)
    if numeric:
        x = _as_number(value)
        if x is None:
            return None, (f"{_short(value)} is not a number; allowed: "
                          f"{_show([labels[i] for i in ok])}")
        levels = np.asarray(labels, dtype=float)
        distinct = np.unique(levels)
        tol = float(np.diff(distinct).min()) / 2 if len(distinct) > 1 else 0.5
        idx = int(np.argmin(np.abs(levels - x)))
        if abs(levels[idx] - x) > tol + 1e-9:
            return None, (f"{_short(value)} is outside the levels; allowed: "
                          f"{_show([labels[i] for i in ok])}")
    else:
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            return None, f"{_short(value)} is not one of {_show([labels[i] for i in ok])}"
        key = str(value).strip().casefold()
        by_label = {str(lab).casefold(): i for i, lab in enumerate(labels)}
        idx = by_label.get(key, (synonyms or {}).get(key, -1))
        if idx < 0:
            return None, f"{_short(value)} is not one of {_show([labels[i] for i in ok])}"
    if idx not in ok:
        return None, (f"{_short(labels[idx])} is not allowed now; allowed: "
                      f"{_show([labels[i] for i in ok])}")
    return idx, None


def _lowest(labels: Sequence[Any], ok: Sequence[int]) -> int:
    if not ok:
        return 0
    if all(_is_number(labels[i]) for i in ok):
        return min(ok, key=lambda i: (labels[i], i))
    return ok[0]


def safe_action(view: Mapping[str, Any]) -> np.ndarray:
    """The action a fully failed reply plays (see the module docstring).

    Example:
        >>> safe_action({"actions": {"move_0": ["C", "D"]}}).tolist()
        [0]
    """
    layout = check_view(view)["actions"]
    variant = variant_of(view)
    out = np.zeros(len(layout), dtype=np.int64)
    for d, (dim, labels) in enumerate(layout.items()):
        ok = allowed(view, dim)
        if variant in ("dilemma", "commons") or dim == "kind" or dim.startswith("respond_"):
            out[d] = 0
        elif variant == "sandbox":
            out[d] = _lowest(labels, ok) if dim != "target_slot" else (min(ok) if ok else 0)
        else:
            out[d] = 0 if (0 in ok or not ok) else ok[0]
    return out


# ---------------------------------------------------------------------- per variant
class _Reader:
    """Collects the per-field problems of one reply."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.fields: list[str] = []

    def bad(self, name: str, why: str, then: str) -> None:
        self.fields.append(name)
        self.problems.append(f"{name}: {why}; {then}")


def _lower_keys(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).strip().casefold(): v for k, v in obj.items()}


def _slot_by_name(view: Mapping[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for nb in view.get("neighbors") or []:
        out.setdefault(str(nb.get("agent")).casefold(), int(nb["slot"]))
    return out


def _slot_of(key: Any, names: Mapping[str, int]) -> int | None:
    """A neighbour's slot from its name, a slot number or ``"slot 3"``."""
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, float) and key.is_integer():
        return int(key)
    if isinstance(key, str):
        s = key.strip().casefold()
        if s in names:
            return names[s]
        m = re.fullmatch(r"(?:slot\s*)?(\d{1,6})", s)
        if m:
            return int(m.group(1))
    return None


def _read_dilemma(obj: dict[str, Any], view: Mapping[str, Any], r: _Reader) -> np.ndarray:
    layout = view["actions"]
    dims = list(layout)
    action = np.zeros(len(dims), dtype=np.int64)
    names = _slot_by_name(view)
    label = {int(nb["slot"]): str(nb.get("agent")) for nb in view.get("neighbors") or []}
    playing = [int(nb["slot"]) for nb in view.get("neighbors") or []
               if f"move_{int(nb['slot'])}" in layout
               and 1 in allowed(view, f"move_{int(nb['slot'])}")]
    moves = obj.get("moves")
    if moves is None and len(playing) == 1 and "move" in obj:  # one game: {"move": "D"}
        moves = {str(playing[0]): obj["move"]}
    synonyms = {"cooperate": 0, "defect": 1}
    given: dict[int, Any] = {}
    if moves is None:
        moves = {}
    if not isinstance(moves, Mapping):
        r.bad("moves", f"{_short(moves)} is not an object of neighbour -> \"C\" or \"D\"",
              "played C with everyone")
        moves = {}
    for key, value in moves.items():
        slot = _slot_of(key, names)
        dim = f"move_{slot}"
        if slot is None or slot not in label or dim not in layout:
            r.bad(f"moves.{key}", "not one of your neighbours "
                  f"({', '.join(label[s] for s in playing) or 'none this round'})", "ignored")
            continue
        if slot in given:
            r.bad(f"moves.{key}", f"a second move for {label[slot]}", "the first one kept")
            continue
        given[slot] = value
        idx, why = _choose(value, layout[dim], allowed(view, dim), synonyms)
        if why is not None:
            if slot in playing:
                r.bad(f"moves.{label[slot]}", why, "played C")
            elif _choose(value, layout[dim], [0, 1], synonyms)[0] == 1:
                r.bad(f"moves.{label[slot]}", "no game with this neighbour this round",
                      "no move")
            continue
        action[dims.index(dim)] = idx
    for slot in playing:
        if slot not in given:
            r.bad(f"moves.{label[slot]}", "missing", "played C")
    return action


def _read_sandbox(obj: dict[str, Any], view: Mapping[str, Any], r: _Reader) -> np.ndarray:
    layout = view["actions"]
    dims = list(layout)
    action = safe_action(view)
    at = {d: i for i, d in enumerate(dims)}
    kind, why = _choose(obj.get("kind"), layout["kind"], allowed(view, "kind"))
    if why is not None:
        r.bad("kind", why, f"{_short(layout['kind'][0])} (no proposal)")
        kind = 0
    if kind != 0:
        names = _slot_by_name(view)
        ok_slots = allowed(view, "target_slot")
        raw_target = obj.get("target", obj.get("target_slot"))
        slot = _slot_of(raw_target, names)
        if raw_target is None:
            r.bad("target", "missing", "proposal cancelled")
            kind = 0
        elif slot is None or slot not in ok_slots:
            targets = [str(nb.get("agent")) for nb in view.get("neighbors") or []
                       if int(nb["slot"]) in ok_slots]
            r.bad("target", f"{_short(raw_target)} is not one of your neighbours "
                  f"({', '.join(targets) or 'none'})", "proposal cancelled")
            kind = 0
        else:
            action[at["target_slot"]] = slot
        effort, why = _choose(obj.get("effort"), layout["effort"], allowed(view, "effort"))
        if why is not None:
            r.bad("effort", why, "proposal cancelled")
            kind = 0
        else:
            action[at["effort"]] = effort
        for dim in ("dressing", "transfer"):
            idx, why = _choose(obj.get(dim), layout[dim], allowed(view, dim))
            if why is not None:
                low = _lowest(layout[dim], allowed(view, dim))
                r.bad(dim, why, f"{_short(layout[dim][low])} (the lowest level)")
            else:
                action[at[dim]] = idx
        if kind == 0:  # cancelled: back to the safe values of the proposal's fields
            safe = safe_action(view)
            for dim in ("target_slot", "effort", "dressing", "transfer"):
                action[at[dim]] = safe[at[dim]]
    action[at["kind"]] = kind
    _read_respond(obj, view, r, action, at)
    return action


def _read_respond(obj: dict[str, Any], view: Mapping[str, Any], r: _Reader,
                  action: np.ndarray, at: Mapping[str, int]) -> None:
    keys = inbox_keys(view)  # inbox slot -> the key the prompt asked for
    senders = {str(e.get("from")).casefold(): int(e["slot"])
               for e in view.get("inbox") or [] if isinstance(e, Mapping)}
    by_key = {k.casefold(): s for s, k in keys.items()}
    respond = obj.get("respond", obj.get("responses"))
    if respond is None:
        respond = {}
    if not isinstance(respond, Mapping):
        if keys:
            r.bad("respond", f"{_short(respond)} is not an object of sender -> "
                  '"accept" or "reject"', "rejected every proposal")
        respond = {}
    synonyms = {"yes": 1, "no": 0, "true": 1, "false": 0, "accepted": 1, "rejected": 0}
    decided: set[int] = set()
    for key, value in respond.items():
        k = str(key).strip().casefold()
        slot = by_key.get(k, senders.get(k))
        if slot is None:
            m = re.fullmatch(r"(?:slot\s*)?(\d{1,6})", k)
            slot = int(m.group(1)) if m and int(m.group(1)) in keys else None
        dim = f"respond_{slot}"
        if slot is None or dim not in at:
            r.bad(f"respond.{key}", "no proposal from it in your inbox", "ignored")
            continue
        if slot in decided:
            r.bad(f"respond.{key}", "a second answer to the same proposal", "first kept")
            continue
        decided.add(slot)
        if isinstance(value, bool):
            value = "accept" if value else "reject"
        idx, why = _choose(value, view["actions"][dim], allowed(view, dim), synonyms)
        if why is not None:
            r.bad(f"respond.{keys[slot]}", why, "rejected")
            continue
        action[at[dim]] = idx
    for slot, key in keys.items():
        dim = f"respond_{slot}"
        if slot not in decided and dim in at and 1 in allowed(view, dim):
            r.bad(f"respond.{key}", "missing", "rejected")


def _read_generic(obj: dict[str, Any], view: Mapping[str, Any], r: _Reader) -> np.ndarray:
    layout = view["actions"]
    action = safe_action(view)
    for d, (dim, labels) in enumerate(layout.items()):
        idx, why = _choose(obj.get(str(dim).casefold()), labels, allowed(view, dim))
        if why is not None:
            r.bad(str(dim), why, f"{_short(labels[int(action[d])])} (the safe value)")
        else:
            action[d] = idx
    return action


def parse_reply(text: str | None, view: Mapping[str, Any]) -> Parsed:
    """Read a reply into an action for the agent whose view this is.

    Args:
        text: The model's reply (``None`` or ``""``: a failed request; all safe values).
        view: The agent's ``infos[agent]["view"]`` (``actions``, ``mask``, ``neighbors``,
            ``inbox``).

    Returns:
        A :class:`Parsed`; never raises for a bad reply.

    Raises:
        ValueError: The view itself is unusable (no action layout; see
            :func:`llm_policies.prompts.check_view`).

    Example:
        >>> view = {"actions": {"kind": ["none", "trade"], "target_slot": [0, 1],
        ...                     "effort": [0.0, 0.5, 1.0], "dressing": [0.0, 1.0],
        ...                     "transfer": [0.0, 0.5], "respond_0": ["reject", "accept"]},
        ...         "neighbors": [{"slot": 1, "agent": "agent_4"}],
        ...         "inbox": [{"slot": 0, "from": "agent_4"}]}
        >>> p = parse_reply('{"kind": "Trade", "target": "agent_4", "effort": 0.9, '
        ...                 '"dressing": 0, "transfer": "0.5", '
        ...                 '"respond": {"AGENT_4": "accept"}, "reasoning": "fair"}', view)
        >>> p.action.tolist(), p.fallback, p.reasoning
        ([1, 1, 2, 0, 1, 1], False, 'fair')
    """
    check_view(view)
    variant = variant_of(view)
    obj, why = extract_json(text)
    if obj is None:
        return Parsed(safe_action(view), "", True, f"reply: {why}; safe action played",
                      ("reply",))
    obj = _lower_keys(obj)
    r = _Reader()
    message = None
    if variant == "commons":
        from llm_policies import commons

        action, message = commons.read_reply(obj, view, r)
    elif variant == "dilemma":
        action = _read_dilemma(obj, view, r)
    elif variant == "sandbox":
        action = _read_sandbox(obj, view, r)
    else:
        action = _read_generic(obj, view, r)
    reasoning = obj.get("reasoning", "")
    if not isinstance(reasoning, str):
        reasoning = json.dumps(reasoning, ensure_ascii=False, default=str)
    return Parsed(action, reasoning[:MAX_REASONING], bool(r.fields),
                  "; ".join(r.problems) or None, tuple(r.fields), message)
