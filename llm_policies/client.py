"""A batched, retrying, caching chat client over ``litellm``.

:class:`LLMClient` sends many chat requests at once (one per agent of a step) through
``litellm.acompletion`` with bounded concurrency, a per-call timeout, and retries with
exponential backoff on timeouts, HTTP 429 and 5xx and connection errors (litellm's own
retries, and the OpenAI SDK's, are switched off so that the counts are this client's). Each
request becomes a :class:`Reply`; one request's failure is a reply with ``error`` set, never
an exception, but a batch in which **every** request failed raises
:class:`ProviderUnavailable` (the provider is down or the key is wrong: a runner stops
cleanly and can resume later).

Keys. API keys come only from the environment: litellm's usual variables
(``OPENAI_API_KEY``, ...) or the variable that ``api_key_env`` names, read at call time.
A key is never an attribute of the client, never in its repr, a reply, the cache or an error
text (error texts are scrubbed of every key-like value of the environment).

Dry runs. ``dry_run=True`` calls nothing: every reply is the canned ``"{}"`` with error
``"dry-run"`` at zero cost, and a parser then takes its documented fallback.

``complete_many`` is synchronous: it runs the requests on one event loop kept in a
background thread (litellm caches its HTTP clients per event loop, so a single long-lived
loop is both faster and safe to call repeatedly, even from code that has a loop running).
``acomplete_many`` is the same in ``async`` code.

Example (litellm's ``mock_response``: no provider is called):
    >>> client = LLMClient("gpt-4o-mini", completion_kwargs={"mock_response": '{"a": 1}'})
    >>> [reply] = client.complete_many([[{"role": "user", "content": "Say JSON."}]])
    >>> reply.text, reply.error, reply.attempts, reply.cost > 0
    ('{"a": 1}', None, 1, True)
    >>> LLMClient("openai/fake", dry_run=True).complete_many([[]])[0].error
    'dry-run'
"""

from __future__ import annotations

import asyncio
import atexit
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map

import re  # noqa: E402 - the cost-map switch must precede the litellm import
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Mapping, Sequence  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import litellm  # noqa: E402

from llm_policies.cache import ResponseCache  # noqa: E402

__all__ = ["DRY_RUN_TEXT", "LLMClient", "ProviderUnavailable", "Reply", "scrub"]

litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout

DRY_RUN_TEXT = "{}"
"""What a dry run answers: a valid but empty JSON object (every field falls back)."""

Messages = Sequence[Mapping[str, Any]]

_RETRYABLE = (litellm.Timeout, litellm.RateLimitError, litellm.InternalServerError,
              litellm.ServiceUnavailableError, litellm.BadGatewayError,
              litellm.APIConnectionError, asyncio.TimeoutError, TimeoutError)
_MAX_WAIT = 60.0  # seconds: the longest backoff (or Retry-After) honoured between attempts
_KEYISH_VAR = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_KEYISH_TEXT = [
    re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"),                       # OpenAI-style keys
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9_\-\.=]{6,}"),        # Authorization headers
    re.compile(r"(?i)(api[_-]?key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]{4,}"),
]


class ProviderUnavailable(RuntimeError):
    """Every request of a batch failed, after retries: the provider is down, the model or key
    is wrong, or the network is gone. ``resumable``: a run stopped by it can be resumed once
    the provider answers again.

    Attributes:
        last_error: The last request's error text (scrubbed of keys).
        n_requests: How many requests the batch had.
        model: The model asked.
        replies: The failed replies (their attempts, latency and errors), in order.
    """

    resumable = True

    def __init__(self, model: str, n_requests: int, last_error: str,
                 replies: Sequence[Reply] = ()) -> None:
        self.model = model
        self.n_requests = n_requests
        self.last_error = last_error
        self.replies = list(replies)
        super().__init__(f"LLM provider unavailable: all {n_requests} request(s) to model "
                         f"{model!r} failed after retries; last error: {last_error}")


@dataclass
class Reply:
    """The outcome of one chat request.

    Attributes:
        text: The reply's content (``""`` when the request failed).
        error: ``None``, or a short reason the request failed (``"dry-run"`` in a dry run).
        prompt_tokens, completion_tokens: As the provider counted them (0 if unknown).
        cost: US dollars by litellm's cost map (0.0 for an unknown model, a cached reply or
            a dry run).
        latency_s: Seconds from the first attempt to the answer (0.0 when cached).
        attempts: Provider calls made (0 when cached or dry).
        cached: Whether the reply came from the response cache.
    """

    text: str
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    attempts: int = 0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The reply as a JSON-able dict."""
        return asdict(self)


def _secrets(extra: Sequence[str | None] = ()) -> list[str]:
    values = {v for k, v in os.environ.items() if _KEYISH_VAR.search(k) and len(v) >= 8}
    values.update(v for v in extra if v and len(v) >= 4)
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str | None] = ()) -> str:
    """``text`` with every key-like value replaced by ``***``: the values of environment
    variables whose names look like keys (``*KEY*``, ``*TOKEN*``, ``*SECRET*``,
    ``*PASSWORD*``), the given ``secrets``, and key-shaped strings (``sk-...``,
    ``Bearer ...``, ``api_key=...``).

    Example:
        >>> scrub("denied for key sk-abcdef123456 (Bearer abcdefgh)")
        'denied for key *** (Bearer ***)'
    """
    for value in _secrets(secrets):
        text = text.replace(value, "***")
    text = _KEYISH_TEXT[0].sub("***", text)
    text = _KEYISH_TEXT[1].sub(lambda m: f"{m.group(1)} ***", text)
    return _KEYISH_TEXT[2].sub(lambda m: f"{m.group(1)}***", text)


def _short_error(e: BaseException, secrets: Sequence[str | None]) -> str:
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "Timeout: no answer within the time limit"
    status = getattr(e, "status_code", None)
    message = " ".join(str(e).split())
    prefixes = ("litellm.", f"{type(e).__name__}:", "OpenAIException -", "OpenAIException:")
    while True:  # litellm's messages repeat the class name and the provider's
        shorter = message
        for prefix in prefixes:
            shorter = shorter.removeprefix(prefix).strip()
        if shorter == message:
            break
        message = shorter
    head = type(e).__name__ + (f" (HTTP {status})" if isinstance(status, int) else "")
    return scrub(f"{head}: {message[:200]}", secrets)


def _retry_after(e: BaseException) -> float | None:
    """The server's Retry-After (seconds) on an error response, if it sent one."""
    response = getattr(e, "response", None)
    headers = getattr(response, "headers", None) or getattr(e, "litellm_response_headers", None)
    if not headers:
        return None
    try:
        value = headers.get("retry-after")
        return None if value is None else max(0.0, float(value))
    except (TypeError, ValueError, AttributeError):
        return None


def _retryable(e: BaseException) -> bool:
    if isinstance(e, _RETRYABLE):
        return True
    status = getattr(e, "status_code", None)
    return isinstance(status, int) and (status == 429 or status >= 500)


class _MissingKey(Exception):
    pass


class _LoopThread:
    """One event loop in a daemon thread, per process (recreated after a fork), shut down
    cleanly at exit (litellm keeps a logging task on it)."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _pid: int | None = None

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._pid != os.getpid() or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="llm-client-loop",
                                          daemon=True)
                thread.start()
                if cls._pid != os.getpid():
                    atexit.register(cls.shutdown)
                cls._loop, cls._thread, cls._pid = loop, thread, os.getpid()
            return cls._loop

    @classmethod
    def shutdown(cls) -> None:
        """Cancel what runs on the loop, stop it and close it (idempotent)."""
        with cls._lock:
            loop, thread = cls._loop, cls._thread
            if loop is None or cls._pid != os.getpid() or loop.is_closed():
                return
            cls._loop = cls._thread = None

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=2)
        except Exception:  # noqa: BLE001 - shutting down regardless
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=2)
        if not loop.is_running():
            loop.close()


class LLMClient:
    """Batched chat completions through litellm (see the module docstring).

    Args:
        model: A litellm model name, e.g. ``"openai/gpt-4o-mini"``, ``"anthropic/..."``,
            or ``"openai/<name>"`` with ``api_base`` for any OpenAI-compatible server.
        temperature: Sampling temperature.
        max_tokens: The longest reply, in tokens.
        timeout: Seconds per attempt.
        retries: Retries after a failed attempt (so at most ``retries + 1`` attempts) on
            timeouts, HTTP 429, 5xx and connection errors; other errors are not retried.
        backoff: The first wait between attempts, in seconds; it doubles each retry (capped
            at 60 s; a longer Retry-After from the server is honoured up to that cap).
        concurrency: Requests in flight at once.
        api_base: The server's URL (an OpenAI-compatible ``.../v1``).
        api_key_env: The name of the environment variable holding the key (read at call
            time); ``None``: litellm's usual variables.
        cache: A :class:`~llm_policies.cache.ResponseCache` or its folder; ``None``: none.
        dry_run: Call nothing; every reply is :data:`DRY_RUN_TEXT` with error ``"dry-run"``.
        seed: The default request seed (providers that support one sample reproducibly).
        json_mode: Ask for a JSON object (``response_format``); ``None``: where the model
            supports it (always for ``openai/`` models with an ``api_base``).
        completion_kwargs: Extra keyword arguments for every ``litellm.acompletion`` call
            (not part of the cache key; e.g. ``mock_response`` in tests). Never a key.

    Raises:
        ValueError: A parameter out of range, or credentials in ``completion_kwargs``.
    """

    def __init__(self, model: str, *, temperature: float = 0.0, max_tokens: int = 256,
                 timeout: float = 30.0, retries: int = 3, backoff: float = 0.5,
                 concurrency: int = 16, api_base: str | None = None,
                 api_key_env: str | None = None,
                 cache: ResponseCache | str | os.PathLike[str] | None = None,
                 dry_run: bool = False, seed: int | None = None, json_mode: bool | None = None,
                 completion_kwargs: Mapping[str, Any] | None = None) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model: a litellm model name, got {model!r}")
        checks = {"max_tokens": (max_tokens, 1), "concurrency": (concurrency, 1),
                  "retries": (retries, 0)}
        for name, (value, low) in checks.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name}: an int >= {low}, got {value!r}")
        for name, value in (("timeout", timeout), ("backoff", backoff),
                            ("temperature", temperature)):
            if not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
                raise ValueError(f"{name}: a finite number >= 0, got {value!r}")
        if timeout <= 0:
            raise ValueError(f"timeout: seconds > 0, got {timeout!r}")
        extra = dict(completion_kwargs or {})
        bad = [k for k in extra if "key" in k.lower() or k.lower() in ("headers",
                                                                        "extra_headers")]
        if bad:
            raise ValueError(f"completion_kwargs: {bad} not allowed; keys come from the "
                             f"environment (api_key_env)")
        self.model = model
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = float(backoff)
        self.concurrency = concurrency
        self.api_base = api_base
        self.api_key_env = api_key_env
        self.cache = cache if isinstance(cache, ResponseCache) or cache is None \
            else ResponseCache(Path(cache))
        self.dry_run = bool(dry_run)
        self.seed = seed
        self.json_mode = self._supports_json() if json_mode is None else bool(json_mode)
        self._extra = extra

    def __repr__(self) -> str:
        parts = [f"{self.model!r}", f"temperature={self.temperature}",
                 f"max_tokens={self.max_tokens}", f"retries={self.retries}",
                 f"concurrency={self.concurrency}"]
        if self.api_base:
            parts.append(f"api_base={self.api_base!r}")
        if self.api_key_env:
            parts.append(f"api_key_env={self.api_key_env!r}")  # the name, never the value
        if self.cache is not None:
            parts.append(f"cache={self.cache!r}")
        if self.dry_run:
            parts.append("dry_run=True")
        return f"LLMClient({', '.join(parts)})"

    # ------------------------------------------------------------------ requests
    def _supports_json(self) -> bool:
        if self.model.startswith("openai/") and self.api_base:
            return True
        try:
            params = litellm.get_supported_openai_params(model=self.model) or []
        except Exception:  # noqa: BLE001 - an unknown provider: do not ask
            return False
        return "response_format" in params

    def request(self, messages: Messages, seed: int | None = None) -> dict[str, Any]:
        """The request that ``messages`` make (what the cache keys on; no credentials).

        Example:
            >>> sorted(LLMClient("openai/fake", api_base="http://x/v1").request([]))
            ['api_base', 'max_tokens', 'messages', 'model', 'response_format', 'seed', \
'temperature']
        """
        return {"model": self.model,
                "messages": [{"role": str(m["role"]), "content": str(m["content"])}
                             for m in messages],
                "temperature": self.temperature, "max_tokens": self.max_tokens,
                "seed": self.seed if seed is None else int(seed),
                "response_format": {"type": "json_object"} if self.json_mode else None,
                "api_base": self.api_base}

    def _key(self) -> str | None:
        if not self.api_key_env:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise _MissingKey(f"environment variable {self.api_key_env} (api_key_env) is "
                              f"not set or empty")
        return value

    async def _attempt(self, request: dict[str, Any]) -> Any:
        kwargs: dict[str, Any] = {
            "model": request["model"], "messages": request["messages"],
            "temperature": request["temperature"], "max_tokens": request["max_tokens"],
            "timeout": self.timeout, "num_retries": 0, "max_retries": 0,
            "drop_params": True, **self._extra}
        if request["seed"] is not None:
            kwargs["seed"] = request["seed"]
        if request["response_format"] is not None:
            kwargs["response_format"] = request["response_format"]
        if request["api_base"]:
            kwargs["api_base"] = request["api_base"]
        key = self._key()
        if key is not None:
            kwargs["api_key"] = key
        # the SDK's timeout bounds reads; wait_for bounds the whole attempt
        return await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=self.timeout)

    async def _one(self, messages: Messages, seed: int | None,
                   semaphore: asyncio.Semaphore) -> Reply:
        if self.dry_run:
            return Reply(text=DRY_RUN_TEXT, error="dry-run")
        request = self.request(messages, seed)
        if self.cache is not None:
            hit = self.cache.get(request)
            if hit is not None:
                return Reply(text=hit["text"], prompt_tokens=int(hit.get("prompt_tokens", 0)),
                             completion_tokens=int(hit.get("completion_tokens", 0)),
                             cached=True)
        secrets = [os.environ.get(self.api_key_env)] if self.api_key_env else []
        async with semaphore:
            start = time.perf_counter()
            attempts = 0
            while True:
                attempts += 1
                try:
                    response = await self._attempt(request)
                    break
                except asyncio.CancelledError:
                    raise
                except _MissingKey as e:
                    return Reply(text="", error=str(e), attempts=attempts - 1)
                except Exception as e:  # noqa: BLE001 - one request's failure is its reply
                    if not _retryable(e) or attempts > self.retries:
                        return Reply(text="", error=_short_error(e, secrets),
                                     latency_s=time.perf_counter() - start, attempts=attempts)
                    wait = self.backoff * 2 ** (attempts - 1)
                    wait = min(max(wait, _retry_after(e) or 0.0), _MAX_WAIT)
                    await asyncio.sleep(wait)
        latency = time.perf_counter() - start
        text = _content(response)
        usage = getattr(response, "usage", None)
        reply = Reply(text=text,
                      prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                      completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                      cost=_cost(response), latency_s=latency, attempts=attempts)
        if self.cache is not None:
            try:
                self.cache.put(request, {"text": reply.text,
                                         "prompt_tokens": reply.prompt_tokens,
                                         "completion_tokens": reply.completion_tokens})
            except OSError as e:  # a full disk must not lose the reply
                import warnings

                warnings.warn(f"response cache: cannot write ({e}); reply kept in memory",
                              RuntimeWarning, stacklevel=2)
        return reply

    async def acomplete_many(self, batch: Sequence[Messages],
                             seeds: Sequence[int | None] | None = None) -> list[Reply]:
        """Send every message list of ``batch`` (at most ``concurrency`` at once); one
        :class:`Reply` each, in order.

        Args:
            batch: One list of chat messages (``{"role", "content"}`` dicts) per request.
            seeds: One request seed per request (``None`` entries: the client's ``seed``).

        Raises:
            ProviderUnavailable: Every request failed (not in a dry run; not for an empty
                batch).
        """
        if seeds is not None and len(seeds) != len(batch):
            raise ValueError(f"seeds: one per request, got {len(seeds)} for {len(batch)}")
        semaphore = asyncio.Semaphore(self.concurrency)
        replies = list(await asyncio.gather(*(
            self._one(messages, None if seeds is None else seeds[i], semaphore)
            for i, messages in enumerate(batch))))
        if replies and not self.dry_run and all(r.error is not None for r in replies):
            raise ProviderUnavailable(self.model, len(replies), replies[-1].error or "?",
                                      replies)
        return replies

    def complete_many(self, batch: Sequence[Messages],
                      seeds: Sequence[int | None] | None = None) -> list[Reply]:
        """:meth:`acomplete_many`, synchronously (on the client's background event loop).

        Example:
            >>> c = LLMClient("gpt-4o-mini", completion_kwargs={"mock_response": "hi"})
            >>> [r.text for r in c.complete_many([[{"role": "user", "content": "x"}]] * 2)]
            ['hi', 'hi']
        """
        if self.dry_run or not batch:  # nothing to await
            return [Reply(text=DRY_RUN_TEXT, error="dry-run") for _ in batch]
        future = asyncio.run_coroutine_threadsafe(self.acomplete_many(batch, seeds),
                                                  _LoopThread.loop())
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise


    def complete_texts(self, batch: Sequence[Messages]) -> list[str | None]:
        """The reply texts of :meth:`complete_many` (``None`` for a failed request): the
        ``complete`` callable that :func:`llm_policies.judge.judge_turns` takes.

        Example:
            >>> LLMClient("gpt-4o-mini", completion_kwargs={"mock_response": "{}"}
            ...           ).complete_texts([[{"role": "user", "content": "x"}]])
            ['{}']
        """
        return [r.text if r.error is None else None for r in self.complete_many(batch)]


def _content(response: Any) -> str:
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, KeyError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


def _cost(response: Any) -> float:
    hidden = getattr(response, "_hidden_params", None) or {}
    if "response_cost" in hidden:  # litellm priced it already (None: a model it cannot price)
        cost = hidden["response_cost"]
        return float(cost) if cost and cost == cost else 0.0
    try:
        cost = litellm.completion_cost(completion_response=response)
    except Exception:  # noqa: BLE001 - a model the cost map does not know costs 0
        return 0.0
    return float(cost) if cost and cost == cost else 0.0
