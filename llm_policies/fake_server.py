"""A small OpenAI-compatible chat-completions server for tests (standard library only).

:class:`FakeOpenAIServer` runs ``http.server`` in a background thread on ``127.0.0.1`` (a
free port) and answers ``POST /v1/chat/completions`` (and ``/chat/completions``) in the
OpenAI response format, so the real client path (``litellm`` with ``model="openai/fake"``
and ``api_base=server.url``) can be tested without the internet. Replies are scripted per
request, by a list or by a function of the request's JSON body; latency and failures (HTTP
429 or 500, malformed bodies) can be injected; requests are counted and their bodies kept.

Example:
    >>> import json, urllib.request
    >>> with FakeOpenAIServer(replies=['{"moves": {}}']) as server:
    ...     req = urllib.request.Request(
    ...         server.url + "/chat/completions", method="POST",
    ...         data=json.dumps({"model": "fake", "messages": []}).encode(),
    ...         headers={"Content-Type": "application/json"})
    ...     body = json.loads(urllib.request.urlopen(req).read())
    >>> body["choices"][0]["message"]["content"], server.requests, server.completed
    ('{"moves": {}}', 1, 1)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeOpenAIServer", "Scripted"]


@dataclass(frozen=True)
class Scripted:
    """A scripted answer to one request (what a reply function may return instead of text).

    Attributes:
        content: The message content (``None``: ``"{}"``).
        status: The HTTP status; anything but 200 sends an OpenAI-style error body.
        latency: Seconds to wait before answering (``None``: the server's ``latency``).
        raw: Bytes sent as the whole response body instead of the OpenAI JSON (a malformed
            response, not just malformed content).
    """

    content: str | None = None
    status: int = 200
    latency: float | None = None
    raw: bytes | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 drops bursts of connections (1 s SYN retries)


ReplyFn = Callable[[dict[str, Any]], "str | Scripted"]
FailFn = Callable[[int, dict[str, Any]], "int | None"]


class FakeOpenAIServer:
    """A threaded fake of the OpenAI chat-completions endpoint (use it as a context manager).

    Args:
        replies: What to answer: a function of the request body (a dict) returning the
            content string or a :class:`Scripted`; or a sequence of those, taken in order of
            arrival (cycled). Default: ``"{}"``.
        latency: Seconds every answer waits (in its own thread: answers overlap).
        fail: Requests to fail: a collection of request indices (0-based, in order of
            arrival) answered with HTTP 500, or a function ``(index, body) -> status | None``
            (e.g. 429 or 500; ``None``: answer normally).

    Attributes:
        url: ``http://127.0.0.1:PORT/v1`` once started (an OpenAI ``api_base``).
        requests: Requests received (every attempt, failed ones too).
        completed: Requests answered with HTTP 200.
        bodies: The JSON bodies received, in order of arrival.
        authorizations: The ``Authorization`` header of each request (what the provider
            would see), in order of arrival.
        statuses: The HTTP status sent for each request, in order of answering.
        in_flight, max_in_flight: Requests being answered now, and the most at once.
    """

    def __init__(self, replies: ReplyFn | Sequence[str | Scripted] | None = None, *,
                 latency: float = 0.0, fail: Collection[int] | FailFn | None = None) -> None:
        if replies is not None and not callable(replies) and not isinstance(replies, Sequence):
            raise TypeError(f"replies: a function or a sequence, got {type(replies).__name__}")
        if isinstance(replies, (str, bytes)):
            raise TypeError("replies: a sequence of replies, not one string (wrap it in a list)")
        if replies is not None and not callable(replies) and len(replies) == 0:
            raise ValueError("replies: an empty sequence; give at least one reply")
        self.replies = replies
        self.latency = float(latency)
        self.fail = fail
        self.requests = 0
        self.completed = 0
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self.statuses: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count()

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        """The base URL of the OpenAI API (``.../v1``)."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer: not started (use it in a with block)")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        """Bind ``127.0.0.1`` on a free port and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

        self._stop.clear()
        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (pending answers stop waiting) and free the port."""
        if self._httpd is None:
            return
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ answering
    def _script(self, index: int, body: dict[str, Any]) -> Scripted:
        fail = self.fail
        status: int | None = None
        if callable(fail):
            status = fail(index, body)
        elif fail is not None and index in fail:
            status = 500
        if status is not None and status != 200:
            return Scripted(status=int(status))
        replies = self.replies
        if replies is None:
            out: str | Scripted = "{}"
        elif callable(replies):
            out = replies(body)
        else:
            out = replies[index % len(replies)]
        return out if isinstance(out, Scripted) else Scripted(content=str(out))

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0].rstrip("/")
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._send(handler, 404, _error_body(404, f"no route {path}"))
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
        except ValueError as e:
            self._send(handler, 400, _error_body(400, f"bad request body: {e}"))
            return
        with self._lock:
            index = self.requests
            self.requests += 1
            self.bodies.append(body)
            self.authorizations.append(handler.headers.get("Authorization"))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(handler, index, body)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler, index: int,
                body: dict[str, Any]) -> None:
        try:
            script = self._script(index, body)
        except Exception as e:  # noqa: BLE001 - a broken script is the test's 500
            script = Scripted(status=500, content=f"reply script raised {e!r}")
        wait = self.latency if script.latency is None else script.latency
        if wait > 0 and self._stop.wait(wait):
            return  # closing: drop the answer
        if script.raw is not None:
            payload = script.raw
        elif script.status != 200:
            payload = _error_body(script.status, script.content or "injected failure")
        else:
            payload = self._completion(body, script.content if script.content is not None
                                       else "{}")
        self._send(handler, script.status, payload)

    def _completion(self, body: dict[str, Any], content: str) -> bytes:
        prompt_words = sum(len(str(m.get("content", "")).split())
                           for m in body.get("messages", []) if isinstance(m, dict))
        completion_words = len(content.split())
        return json.dumps({
            "id": f"chatcmpl-fake-{next(self._ids)}", "object": "chat.completion",
            "created": int(time.time()), "model": str(body.get("model", "fake")),
            "system_fingerprint": "fake",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_words, "completion_tokens": completion_words,
                      "total_tokens": prompt_words + completion_words},
        }).encode()

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
        except OSError:  # the client gave up (a timeout): nothing to answer
            return
        with self._lock:
            self.statuses.append(status)
            if status == 200:
                self.completed += 1


def _error_body(status: int, message: str) -> bytes:
    kind = {429: "rate_limit_exceeded", 400: "invalid_request_error",
            404: "not_found"}.get(status, "server_error")
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": str(status)}}).encode()
