"""What the LLM agents said: one self-contained HTML page per run.

``distsafe conversations RUN_DIR`` reads the run's event log (its ``turn`` events: for each
agent and step, the prompt, the reply, the stated reasoning, the action taken and whether a
fallback replaced it) and writes ``conversations.html`` into the run folder: one section per
agent, one block per step. The page has no scripts and loads nothing: CSS is inline, and every
piece of text that came from a model or from the environment is HTML-escaped, so a reply
cannot inject markup into the page.

Example:
    >>> from envs.core.events import PolicyTurn
    >>> turn = PolicyTurn(step=0, epoch=0, agent="agent_0", policy="llm",
    ...                   data={"reply": "<b>hi</b>", "reasoning": "r", "fallback": False})
    >>> page = render_page([turn], title="demo")
    >>> "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page
    True
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["render_page", "write_conversations"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:2em}
.turn{border:1px solid #ddd;border-radius:6px;margin:.8em 0;padding:.6em .9em}
.turn.fallback{border-color:#c33;background:#fff5f5}
.meta{color:#555;font-size:.9em}
pre{white-space:pre-wrap;word-break:break-word;background:#f7f7f7;padding:.5em;
margin:.3em 0;font-size:.85em}
.role{font-weight:600;font-size:.8em;text-transform:uppercase;color:#666}
summary{cursor:pointer;color:#225}
.tag{display:inline-block;padding:0 .4em;border-radius:3px;background:#eee;margin-left:.4em}
.tag.bad{background:#c33;color:#fff}
"""


def _esc(value: Any) -> str:
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return html.escape(value, quote=True)


def _messages(prompt: Any) -> str:
    if isinstance(prompt, list):
        parts = []
        for m in prompt:
            role = m.get("role", "?") if isinstance(m, dict) else "?"
            content = m.get("content", "") if isinstance(m, dict) else m
            parts.append(f'<div class="role">{_esc(role)}</div><pre>{_esc(content)}</pre>')
        return "".join(parts)
    return f"<pre>{_esc(prompt)}</pre>"


def _turn(t: Any) -> str:
    d = dict(t.data)
    fallback = bool(d.get("fallback"))
    tags = []
    if fallback:
        tags.append('<span class="tag bad">fallback</span>')
    if d.get("cached"):
        tags.append('<span class="tag">cached</span>')
    if d.get("error"):
        tags.append(f'<span class="tag bad">{_esc(d["error"])}</span>')
    rows = [f'<div class="meta">step {t.step} · epoch {t.epoch} · policy {_esc(t.policy)}'
            f'{"".join(tags)}</div>']
    if "reasoning" in d:
        rows.append(f'<div class="role">stated reasoning</div><pre>{_esc(d["reasoning"])}'
                    "</pre>")
    if "action" in d:
        rows.append(f'<div class="role">action taken</div><pre>{_esc(d["action"])}</pre>')
    if d.get("problem"):
        rows.append(f'<div class="role">why the fallback</div><pre>{_esc(d["problem"])}'
                    "</pre>")
    if "reply" in d:
        rows.append(f'<details><summary>reply</summary><pre>{_esc(d["reply"])}</pre>'
                    "</details>")
    if "prompt" in d:
        rows.append(f"<details><summary>prompt</summary>{_messages(d['prompt'])}</details>")
    rest = {k: v for k, v in d.items() if k not in (
        "reasoning", "action", "problem", "reply", "prompt", "fallback", "cached", "error")}
    if rest:
        rows.append(f"<details><summary>more</summary><pre>{_esc(rest)}</pre></details>")
    return f'<div class="turn{" fallback" if fallback else ""}">{"".join(rows)}</div>'


def render_page(turns: Sequence[Any], title: str = "conversations") -> str:
    """The HTML page of ``turns`` (:class:`~envs.core.events.PolicyTurn` events), grouped by
    agent in order of first appearance, each agent's turns in step order."""
    by_agent: dict[str, list[Any]] = {}
    for t in turns:
        by_agent.setdefault(t.agent, []).append(t)
    n_fallback = sum(bool(t.data.get("fallback")) for t in turns)
    body = [f"<h1>{_esc(title)}</h1>",
            f'<p class="meta">{len(turns)} turns of {len(by_agent)} agents; '
            f"{n_fallback} fallbacks. Text from models and the environment is shown "
            "escaped, as data.</p>"]
    if not turns:
        body.append("<p>No policy turns in this run (no LLM agents?).</p>")
    for agent, items in by_agent.items():
        falls = sum(bool(t.data.get("fallback")) for t in items)
        body.append(f'<h2 id="{_esc(agent)}">{_esc(agent)} <span class="meta">'
                    f"({len(items)} turns, {falls} fallbacks)</span></h2>")
        body.extend(_turn(t) for t in sorted(items, key=lambda t: t.step))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def write_conversations(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``conversations.html`` (or ``out``) for the run in ``run_dir``; returns its path.

    Raises:
        FileNotFoundError: no ``events.jsonl`` in ``run_dir``.
        envs.core.events.LogError: a log that fails its checks.
    """
    from envs.core.events import replay

    run_dir = Path(run_dir)
    events = run_dir / "events.jsonl"
    if not events.is_file():
        raise FileNotFoundError(f"{events}: no event log (is {run_dir} a run folder?)")
    rep = replay(events, episode=0)
    path = Path(out) if out is not None else run_dir / "conversations.html"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render_page(rep.turns, title=f"conversations: {run_dir.name}"),
                   encoding="utf-8")
    tmp.replace(path)
    return path
