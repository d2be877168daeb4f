"""``LLMPolicy``: agents played by a language model, one request per agent and step.

The policy reads each agent's ``infos[agent]["view"]`` (so it is not array-batched: the
runner calls :meth:`LLMPolicy.act_batch` with observations and infos), builds the chat
messages (:mod:`llm_policies.prompts`), sends the step's requests of all its agents at once
(:class:`llm_policies.client.LLMClient`: bounded concurrency, retries, response cache),
parses every reply (:mod:`llm_policies.parsing`: per field, safe fallbacks) and returns the
actions. It keeps

* per-agent **usage** (:meth:`LLMPolicy.usage`): turns, provider requests and attempts,
  prompt and completion tokens, cost, fallbacks, errors, latency, cache hits;
* the **turns** since the last :meth:`LLMPolicy.pop_turns`: one record per agent and step
  (prompt, reply, reasoning, action, fallback, problem, cached, error, and the free-text
  ``message`` sent, if any) for the event log;
* the **free-text messages** of the step (the commons): :meth:`LLMPolicy.pop_messages`
  gives ``{agent: (text, to)}``, which the runner hands to the env's ``send_text`` before
  the step. In the commons, an agent that cannot act (eliminated, or frozen: every action
  dimension masked to its no-op) sends no request and plays the no-op.

Seeds. Each request carries a seed derived from the policy's seed (the one the runner
re-seeds it with), the agent and the step; it is part of the cache key, so a rerun of a seed
is identical and, with a cache, free. A provider that ignores seeds still answers from the
cache on a rerun.

In a scenario (``type: llm``, parameters in an ``llm:`` block)::

    agents:
      - type: llm
        count: 2
        llm: {model: openai/gpt-4o-mini, strategy: TFT, temperature: 0}

Example (a dry run: no provider is called and every field takes its safe value):
    >>> import envs
    >>> env = envs.make("dilemma-v0", n_epochs=1, steps_per_epoch=2)
    >>> obs, infos = env.reset(seed=0)
    >>> pol = LLMPolicy(seed=0, model="openai/gpt-4o-mini", strategy="TFT", dry_run=True)
    >>> pol.act_batch([obs["agent_0"]], [infos["agent_0"]]).tolist()
    [[0]]
    >>> pol.usage()["total"]["fallbacks"], pol.pop_turns()[0]["error"]
    (1, 'dry-run')
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from baselines.policy import Policy
from llm_policies.cache import ResponseCache
from llm_policies.client import LLMClient, ProviderUnavailable, Reply
from llm_policies.commons import ROLES, normalize_role
from llm_policies.parsing import parse_reply
from llm_policies.prompts import (
    PERSONAS,
    STRATEGIES,
    allowed,
    build_messages,
    normalize_persona,
    normalize_strategy,
    variant_of,
)

__all__ = ["CACHE_DIRNAME", "LLMPolicy", "ProviderUnavailable"]

CACHE_DIRNAME = "llm_cache"
"""The response cache's folder inside a run folder (when ``cache_dir`` is not given)."""

_COUNTERS = ("turns", "requests", "attempts", "cache_hits", "errors", "fallbacks",
             "prompt_tokens", "completion_tokens")


def _zero() -> dict[str, Any]:
    return {**dict.fromkeys(_COUNTERS, 0), "cost": 0.0, "latency_s": 0.0}


class LLMPolicy(Policy):
    """A policy whose agents are played by an LLM (see the module docstring).

    Works on any variant whose views carry ``"actions"`` and ``"mask"`` (the sandbox with a
    ``persona``, the dilemma with a ``strategy``, the commons with a ``role``).
    """

    name = "llm"
    io_bound = True  # waits on the provider: entries of a step are asked at the same time
    variants: ClassVar[tuple[str, ...] | None] = None
    classifier: ClassVar[dict[str, Any]] = {"stochastic": True, "reads_view": True,
                                            "memory_depth": float("inf")}

    class Params(Policy.Params):
        """An LLM agent's parameters (a scenario's ``llm:`` block)."""

        model: str = Field(min_length=1, description="litellm model name, e.g. "
                           "openai/gpt-4o-mini (openai/<name> with api_base for any "
                           "OpenAI-compatible server)")
        persona: str | None = Field(None, description="sandbox persona: " + ", ".join(PERSONAS))
        strategy: str | None = Field(None, description="dilemma strategy given in words: "
                                     + ", ".join(STRATEGIES))
        role: str | None = Field(None, description="commons role: " + ", ".join(ROLES))
        temperature: float = Field(0.0, ge=0.0, le=2.0, description="sampling temperature")
        max_tokens: int = Field(256, ge=1, le=32_768, description="longest reply (tokens)")
        concurrency: int = Field(16, ge=1, le=1024, description="requests in flight at once")
        timeout: float = Field(30.0, gt=0.0, le=3600.0, description="seconds per attempt")
        retries: int = Field(3, ge=0, le=20, description="retries on timeouts, 429 and 5xx")
        api_base: str | None = Field(None, description="server URL (OpenAI-compatible)")
        api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                        description="name of the environment variable "
                                        "holding the API key (never the key itself)")
        cache_dir: str | None = Field(None, description="response cache folder (default: "
                                      "the run folder's llm_cache)")
        dry_run: bool = Field(False, description="call no provider: every field falls back")

        @field_validator("persona")
        @classmethod
        def _persona(cls, v: str | None) -> str | None:
            normalize_persona(v)  # raises with the allowed names
            return None if v is None else v.strip().lower()

        @field_validator("strategy")
        @classmethod
        def _strategy(cls, v: str | None) -> str | None:
            return normalize_strategy(v)

        @field_validator("role")
        @classmethod
        def _role(cls, v: str | None) -> str | None:
            normalize_role(v)  # raises with the allowed names
            return None if v is None else v.strip().lower()

    def __init__(self, seed: int | None = None, **params: Any) -> None:
        super().__init__(seed, **params)
        self._run_dir: Path | None = None
        self._dry = bool(self.params.dry_run)
        self._client: LLMClient | None = None
        self._turns: list[dict[str, Any]] = []
        self._messages: dict[str, tuple[str, str | None]] = {}
        self._usage: dict[str, dict[str, Any]] = {}
        self._request_seed = self._derive_base(seed)

    # ------------------------------------------------------------------ set-up
    def _derive_base(self, seed: int | None) -> int:
        if seed is None:  # fresh entropy, drawn once from the policy's own generator
            return int(self.rng.integers(0, 2**31 - 1))
        return int(seed) % (2**31 - 1)

    def reset(self, seed: int | None = None) -> None:
        """Re-seed (``None``: the constructor's seed); the request seeds follow."""
        super().reset(seed)
        self._request_seed = self._derive_base(self._seed if seed is None else seed)

    def bind_run(self, run_dir: Any, **options: Any) -> None:
        """Keep the response cache in ``run_dir/llm_cache`` (unless ``cache_dir`` is set) and
        take ``dry_run=True`` from the run (a dry run stays dry)."""
        self._run_dir = None if run_dir is None else Path(run_dir)
        self._dry = bool(self.params.dry_run or options.get("dry_run", False))
        self._client = None

    @property
    def cache_dir(self) -> Path | None:
        """Where replies are cached (``None``: nowhere)."""
        if self.params.cache_dir:
            return Path(self.params.cache_dir)
        return None if self._run_dir is None else self._run_dir / CACHE_DIRNAME

    @property
    def client(self) -> LLMClient:
        """The client (built on first use, after :meth:`bind_run`)."""
        if self._client is None:
            p = self.params
            cache = None if self.cache_dir is None else ResponseCache(self.cache_dir)
            self._client = LLMClient(
                p.model, temperature=p.temperature, max_tokens=p.max_tokens,
                timeout=p.timeout, retries=p.retries, concurrency=p.concurrency,
                api_base=p.api_base, api_key_env=p.api_key_env, cache=cache,
                dry_run=self._dry)
        return self._client

    def request_seed(self, agent: str, step: int) -> int:
        """The seed of ``agent``'s request at ``step`` (a function of the policy's seed).

        Example:
            >>> p = LLMPolicy(seed=3, model="m")
            >>> p.request_seed("agent_1", 0) == LLMPolicy(seed=3, model="m").request_seed(
            ...     "agent_1", 0)
            True
        """
        ss = np.random.SeedSequence([self._request_seed, zlib.crc32(agent.encode()),
                                     int(step)])
        return int(ss.generate_state(1, np.uint32)[0] >> 1)

    # ------------------------------------------------------------------ acting
    def act_batch(self, observations: Sequence[Any],
                  infos: Sequence[dict | None] | None = None) -> np.ndarray:
        """Actions of the given agents, from their views: one request each, sent together.

        Raises:
            ValueError: ``infos`` missing, or an info without a ``"view"`` (this policy reads
                the view, not the observation arrays).
            ProviderUnavailable: Every request of the step failed after retries.
        """
        n = len(observations)
        if infos is None or len(infos) != n:
            raise ValueError(f"LLMPolicy reads infos[agent]['view']: pass infos, one per "
                             f"observation (got {'none' if infos is None else len(infos)} "
                             f"for {n} observations)")
        views = []
        for k, info in enumerate(infos):
            view = info.get("view") if isinstance(info, dict) else None
            if view is None:
                raise ValueError(f"LLMPolicy reads infos[agent]['view'], and info {k} has "
                                 f"none (keys: {sorted(info) if isinstance(info, dict) else info})"
                                 "; use an env whose infos carry views, with "
                                 "use_arrays=False in rollout")
            views.append(view)
        if not views:
            return np.zeros((0, 0), dtype=np.int64)
        p = self.params
        # the no-op for those with no choice to make (the commons: out or frozen)
        actions = [np.zeros(len(v["actions"]), dtype=np.int64) for v in views]
        asked = [k for k, v in enumerate(views) if not (
            variant_of(v) == "commons" and all(allowed(v, d) == [0] for d in v["actions"]))]
        views = [views[k] for k in asked]
        messages = [build_messages(v, persona=p.persona, strategy=p.strategy, role=p.role)
                    for v in views]
        agents = [str(v.get("agent", f"agent#{k}")) for k, v in enumerate(views)]
        steps = [int(v.get("step", 0)) for v in views]
        seeds = [self.request_seed(a, s) for a, s in zip(agents, steps)]
        try:
            replies = self.client.complete_many(messages, seeds=seeds) if views else []
        except ProviderUnavailable as e:  # the step is not played: count the calls only
            for agent, reply in zip(agents, e.replies):
                self._count(agent, reply, False, turn=False)
            raise
        for k, agent, step, view, msgs, reply in zip(asked, agents, steps, views, messages,
                                                      replies):
            parsed = parse_reply(reply.text if reply.error is None else None, view)
            problem = parsed.problem
            if reply.error is not None:
                problem = f"request failed ({reply.error}); safe action played"
            fallback = parsed.fallback or reply.error is not None
            self._count(agent, reply, fallback)
            action = parsed.action.astype(np.int64, copy=False)
            actions[k] = action
            turn = {
                "agent": agent, "step": step, "prompt": msgs, "reply": reply.text,
                "reasoning": parsed.reasoning, "action": action.tolist(),
                "fallback": fallback, "problem": problem, "cached": reply.cached,
                "error": reply.error, "fields": list(parsed.fields)}
            if parsed.message is not None:
                turn["message"] = dict(parsed.message)
                self._messages[agent] = (parsed.message["text"], parsed.message["to"])
            self._turns.append(turn)
        return np.stack(actions)

    # ------------------------------------------------------------------ reporting
    def _count(self, agent: str, reply: Reply, fallback: bool, *, turn: bool = True) -> None:
        u = self._usage.setdefault(agent, _zero())
        u["turns"] += int(turn)
        u["requests"] += int(reply.attempts > 0)
        u["attempts"] += reply.attempts
        u["cache_hits"] += int(reply.cached)
        u["errors"] += int(reply.error is not None and reply.error != "dry-run")
        u["fallbacks"] += int(fallback)
        u["prompt_tokens"] += reply.prompt_tokens
        u["completion_tokens"] += reply.completion_tokens
        u["cost"] += reply.cost
        u["latency_s"] += reply.latency_s

    def usage(self) -> dict[str, Any]:
        """What the policy's agents used so far: ``{"model", "dry_run", "total": {...},
        "agents": {agent: {...}}}``, each counter set holding ``turns`` (agent-steps),
        ``requests`` (sent to the provider), ``attempts`` (with retries), ``cache_hits``,
        ``errors`` (failed requests), ``fallbacks`` (turns where a safe value replaced some
        or all of the reply), ``prompt_tokens``, ``completion_tokens``, ``cost`` (US dollars)
        and ``latency_s`` (summed)."""
        total = _zero()
        for u in self._usage.values():
            for k in total:
                total[k] += u[k]
        return {"model": self.params.model, "dry_run": self._dry,
                "total": _rounded(total),
                "agents": {a: _rounded(u) for a, u in sorted(self._usage.items())}}

    def pop_messages(self) -> dict[str, tuple[str, str | None]]:
        """The free-text messages of the agents since the last call: ``{agent: (text, to)}``
        (``to`` an agent's name, or ``None`` for a public post). The runner hands them to an
        env that takes text (``send_text``, the commons) before the step; an env without it
        drops them."""
        out, self._messages = self._messages, {}
        return out

    def pop_turns(self) -> list[dict[str, Any]]:
        """The turns since the last call (one dict per agent and step: ``agent``, ``step``,
        ``prompt`` (the messages), ``reply``, ``reasoning``, ``action``, ``fallback``,
        ``problem``, ``cached``, ``error``, ``fields`` that fell back)."""
        out, self._turns = self._turns, []
        return out


def _rounded(u: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in u.items()}
