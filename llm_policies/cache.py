"""An on-disk response cache: a rerun of the same requests is identical and free.

The key of a request is the SHA-256 of its canonical JSON (sorted keys, no spaces): the
model, the messages, temperature, max_tokens, seed, response_format and api_base, exactly
what decides the reply. An API key is never part of a request, a key or a file:
:meth:`ResponseCache.key` refuses a request that carries one. Each entry is one JSON file
``<directory>/<key[:2]>/<key>.json`` holding the request and the reply, written beside its
final name and renamed into place, so two processes sharing a cache never see half a file
(the last writer of the same key wins; both wrote the same request). A file that does not
read back (truncated, not JSON, another request's) is a miss, with a warning.

Example:
    >>> import tempfile
    >>> cache = ResponseCache(tempfile.mkdtemp())
    >>> request = {"model": "openai/fake", "messages": [{"role": "user", "content": "hi"}],
    ...            "temperature": 0.0, "max_tokens": 16, "seed": 1,
    ...            "response_format": None, "api_base": None}
    >>> cache.get(request) is None
    True
    >>> cache.put(request, {"text": "{}", "prompt_tokens": 3, "completion_tokens": 1})
    >>> cache.get(request)["text"]
    '{}'
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["REQUEST_FIELDS", "ResponseCache", "canonical_json", "request_key"]

REQUEST_FIELDS = ("model", "messages", "temperature", "max_tokens", "seed",
                  "response_format", "api_base")
"""What a cached request holds (and nothing else): every field that decides the reply."""

_SECRET_FIELDS = ("api_key", "key", "authorization", "headers", "extra_headers")


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces (the same request always gives the same text).

    Example:
        >>> canonical_json({"b": 1, "a": [1.0, None]})
        '{"a":[1.0,null],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _checked_request(request: Mapping[str, Any]) -> dict[str, Any]:
    secret = [k for k in request if str(k).lower() in _SECRET_FIELDS]
    if secret:
        raise ValueError(f"a cached request never holds credentials; drop {secret} (the "
                         f"fields of a request are {', '.join(REQUEST_FIELDS)})")
    unknown = sorted(set(request) - set(REQUEST_FIELDS))
    if unknown:
        raise ValueError(f"unknown request fields {unknown}; a request holds "
                         f"{', '.join(REQUEST_FIELDS)}")
    return {k: request.get(k) for k in REQUEST_FIELDS}


def request_key(request: Mapping[str, Any]) -> str:
    """The cache key of a request: SHA-256 (hex) of its canonical JSON.

    Args:
        request: The fields of :data:`REQUEST_FIELDS` (missing ones count as ``None``).

    Raises:
        ValueError: A field that is not a request field (an ``api_key`` above all).

    Example:
        >>> a = request_key({"model": "m", "messages": [], "seed": 1})
        >>> a == request_key({"seed": 1, "messages": [], "model": "m", "api_base": None})
        True
        >>> a == request_key({"model": "m", "messages": [], "seed": 2})
        False
    """
    return hashlib.sha256(canonical_json(_checked_request(request)).encode()).hexdigest()


class ResponseCache:
    """Replies on disk, keyed by the request (see the module docstring).

    Args:
        directory: The cache folder (created on the first :meth:`put`).

    Attributes:
        hits, misses, corrupt: Counts of this object's :meth:`get` answers.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0
        self.corrupt = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def path(self, request: Mapping[str, Any]) -> Path:
        """The file that holds (or would hold) the request's reply."""
        key = request_key(request)
        return self.directory / key[:2] / f"{key}.json"

    def get(self, request: Mapping[str, Any]) -> dict[str, Any] | None:
        """The cached reply of ``request``, or ``None`` (a miss; a corrupt file is a miss
        with a warning naming the file)."""
        path = self.path(request)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._count("misses")
            return None
        except OSError as e:
            return self._bad(path, f"cannot read it ({e.strerror or e})")
        try:
            entry = json.loads(text)
        except ValueError as e:
            return self._bad(path, f"not JSON ({e})")
        if not isinstance(entry, dict) or not isinstance(entry.get("reply"), dict):
            return self._bad(path, "no 'reply' object")
        if entry.get("request") != json.loads(canonical_json(_checked_request(request))):
            return self._bad(path, "it holds another request")
        reply = entry["reply"]
        if not isinstance(reply.get("text"), str):
            return self._bad(path, "the reply has no 'text' string")
        self._count("hits")
        return reply

    def put(self, request: Mapping[str, Any], reply: Mapping[str, Any]) -> None:
        """Store ``reply`` (a JSON-able dict with a ``text``) for ``request``: written to a
        unique file beside the final one, then renamed over it (atomic)."""
        path = self.path(request)
        body = canonical_json({"request": _checked_request(request), "reply": dict(reply)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_text(body + "\n", encoding="utf-8")
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink(missing_ok=True)

    def __len__(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(1 for _ in self.directory.glob("*/*.json"))

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _bad(self, path: Path, why: str) -> None:
        self._count("corrupt")
        self._count("misses")
        warnings.warn(f"response cache: ignoring {path}: {why}; the request is sent again",
                      RuntimeWarning, stacklevel=3)
        return None
