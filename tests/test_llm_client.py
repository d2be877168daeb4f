"""LLMClient and ResponseCache: the real litellm call path against a local fake OpenAI server
(scripted replies, latency, 429/500, timeouts), litellm's ``mock_response``, the cache, dry
runs, and that an API key never leaks. Nothing here reaches the internet."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm: no fetch
pytest.importorskip("litellm")

import litellm  # noqa: E402

from llm_policies.cache import ResponseCache, request_key  # noqa: E402
from llm_policies.client import LLMClient, ProviderUnavailable, scrub  # noqa: E402
from llm_policies.fake_server import FakeOpenAIServer, Scripted  # noqa: E402

KEY_ENV = "DISTSAFE_TEST_LLM_KEY"
KEY = "sk-distsafe-FAKEKEY-0123456789abcdef"


@pytest.fixture(autouse=True)
def fake_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": text}]


def echo(body: dict) -> str:
    return json.dumps({"echo": body["messages"][-1]["content"]})


def client(server: FakeOpenAIServer, **kw) -> LLMClient:
    kw.setdefault("backoff", 0.01)
    return LLMClient("openai/fake", api_base=server.url, api_key_env=KEY_ENV, **kw)


# ---------------------------------------------------------------------- the call path
def test_scripted_replies_come_back_in_order_with_usage():
    with FakeOpenAIServer(replies=echo) as server:
        c = client(server, seed=7, max_tokens=64, temperature=0.3)
        replies = c.complete_many([msgs(f"q{i}") for i in range(5)], seeds=[1, 2, 3, 4, None])
    assert [json.loads(r.text)["echo"] for r in replies] == [f"q{i}" for i in range(5)]
    assert all(r.error is None and r.attempts == 1 and not r.cached for r in replies)
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in replies)
    assert all(r.cost == 0.0 for r in replies)  # the cost map does not know "fake"
    bodies = sorted(server.bodies, key=lambda b: b["messages"][-1]["content"])
    assert [b["seed"] for b in bodies] == [1, 2, 3, 4, 7]
    assert bodies[0]["model"] == "fake" and bodies[0]["max_tokens"] == 64
    assert bodies[0]["temperature"] == 0.3
    assert bodies[0]["response_format"] == {"type": "json_object"}
    assert set(server.authorizations) == {f"Bearer {KEY}"}  # the key came from the env var


def test_concurrent_requests_overlap_and_concurrency_is_bounded():
    with FakeOpenAIServer(replies=echo, latency=0.2) as server:
        c = client(server, concurrency=16)
        c.complete_many([msgs("warm-up")])  # the first call builds litellm's HTTP client
        start = time.perf_counter()
        replies = c.complete_many([msgs(f"q{i}") for i in range(16)])
        elapsed = time.perf_counter() - start
        assert all(r.error is None for r in replies)
        assert elapsed < 1.0, f"16 x 200 ms with concurrency 16 took {elapsed:.2f} s"
        assert server.max_in_flight > 8
    with FakeOpenAIServer(replies=echo, latency=0.05) as server:
        c = client(server, concurrency=3)
        assert all(r.error is None for r in c.complete_many([msgs(f"q{i}") for i in range(9)]))
        assert server.max_in_flight <= 3


def test_429_and_500_are_retried_then_succeed():
    with FakeOpenAIServer(replies=echo, fail=lambda i, body: {0: 429, 1: 500}.get(i)) as server:
        [reply] = client(server, retries=3).complete_many([msgs("x")])
    assert reply.error is None and reply.attempts == 3
    assert server.requests == 3 and server.statuses == [429, 500, 200]


def test_backoff_doubles_between_attempts():
    with FakeOpenAIServer(replies=echo, fail=lambda i, body: 503 if i < 2 else None) as server:
        start = time.perf_counter()
        [reply] = client(server, retries=2, backoff=0.1).complete_many([msgs("x")])
        elapsed = time.perf_counter() - start
    assert reply.attempts == 3 and reply.error is None
    assert elapsed >= 0.3  # 0.1 then 0.2


def test_a_client_error_is_not_retried_and_sinks_only_its_request():
    def fail(i, body):
        return 400 if body["messages"][-1]["content"] == "bad" else None

    with FakeOpenAIServer(replies=echo, fail=fail) as server:
        replies = client(server, retries=3).complete_many([msgs("ok"), msgs("bad")])
    assert replies[0].error is None
    assert replies[1].text == "" and replies[1].attempts == 1
    assert "HTTP 400" in replies[1].error
    assert server.requests == 2


def test_persistent_500_raises_provider_unavailable():
    with FakeOpenAIServer(replies=echo, fail=lambda i, body: 500) as server:
        with pytest.raises(ProviderUnavailable) as info:
            client(server, retries=2).complete_many([msgs("a"), msgs("b")])
    assert server.requests == 2 * 3
    e = info.value
    assert e.resumable and e.n_requests == 2 and "500" in e.last_error
    assert [r.attempts for r in e.replies] == [3, 3]


def test_timeouts_are_retried_then_reported():
    with FakeOpenAIServer(replies=echo, latency=2.0) as server:
        start = time.perf_counter()
        with pytest.raises(ProviderUnavailable, match="Timeout"):
            client(server, timeout=0.2, retries=1).complete_many([msgs("slow")])
        assert time.perf_counter() - start < 1.5
        assert server.requests == 2


def test_a_timeout_then_a_fast_answer_succeeds():
    calls = []

    def slow_first(body):
        calls.append(1)
        return Scripted(content='{"ok": 1}', latency=2.0 if len(calls) == 1 else 0.0)

    with FakeOpenAIServer(replies=slow_first) as server:
        [reply] = client(server, timeout=0.3, retries=2).complete_many([msgs("x")])
        assert reply.error is None and reply.attempts == 2 and reply.text == '{"ok": 1}'
        assert server.requests == 2


def test_malformed_content_and_bodies_come_back_as_text_or_errors():
    def script(body):
        content = body["messages"][-1]["content"]
        if content == "raw":
            return Scripted(raw=b"this is not JSON at all")
        return "{not json"

    with FakeOpenAIServer(replies=script) as server:
        replies = client(server, retries=0).complete_many([msgs("content"), msgs("raw")])
    assert replies[0].error is None and replies[0].text == "{not json"  # the parser's job
    assert replies[1].error is not None and replies[1].text == ""


def test_missing_key_variable_is_named_and_never_sent(monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with FakeOpenAIServer(replies=echo) as server:
        with pytest.raises(ProviderUnavailable, match=KEY_ENV):
            client(server).complete_many([msgs("x")])
        assert server.requests == 0


def test_complete_many_is_repeatable_and_works_inside_a_running_loop():
    with FakeOpenAIServer(replies=echo) as server:
        c = client(server)
        for i in range(3):
            assert c.complete_many([msgs(f"r{i}")])[0].error is None

        async def inside():  # a sync call from code that has a loop running
            return c.complete_many([msgs("in-loop")]), await c.acomplete_many([msgs("async")])

        sync, direct = asyncio.run(inside())
        assert json.loads(sync[0].text)["echo"] == "in-loop"
        assert json.loads(direct[0].text)["echo"] == "async"
        assert c.complete_many([]) == []


def test_dry_run_calls_nothing():
    with FakeOpenAIServer(replies=echo) as server:
        replies = client(server, dry_run=True).complete_many([msgs("a"), msgs("b")])
        assert server.requests == 0
    assert [(r.text, r.error, r.cost, r.attempts) for r in replies] == [("{}", "dry-run", 0, 0)] * 2


@pytest.mark.parametrize("kw", [{"concurrency": 0}, {"retries": -1}, {"timeout": 0},
                                {"max_tokens": 0}, {"completion_kwargs": {"api_key": "x"}}])
def test_bad_parameters_are_refused(kw):
    with pytest.raises(ValueError):
        LLMClient("openai/fake", **kw)


def test_fake_server_scripts_by_list_and_by_index():
    with FakeOpenAIServer(replies=["a", Scripted(content="b")], fail={1}) as server:
        c = client(server, retries=0, concurrency=1)
        replies = c.complete_many([msgs("1"), msgs("2"), msgs("3")])
    assert [r.text for r in replies] == ["a", "", "a"]  # request 1 failed; the list cycles
    assert server.statuses == [200, 500, 200] and server.completed == 2
    with pytest.raises(ValueError, match="empty"):
        FakeOpenAIServer(replies=[])


# ---------------------------------------------------------------------- mock_response
def test_mock_response_gives_text_tokens_and_cost():
    c = LLMClient("gpt-4o-mini", completion_kwargs={"mock_response": '{"moves": {}}'})
    assert c.json_mode  # the model supports response_format
    [reply] = c.complete_many([msgs("hello")])
    assert reply.text == '{"moves": {}}' and reply.error is None
    assert reply.prompt_tokens > 0 and reply.cost > 0.0  # gpt-4o-mini is in the cost map


def test_mock_rate_limit_is_retried_and_its_error_scrubbed():
    error = litellm.RateLimitError(f"slow down, key {KEY}", llm_provider="openai",
                                   model="gpt-4o-mini")
    c = LLMClient("gpt-4o-mini", retries=2, backoff=0.0,
                  completion_kwargs={"mock_response": error})
    with pytest.raises(ProviderUnavailable) as info:
        c.complete_many([msgs("x")])
    assert info.value.replies[0].attempts == 3
    assert "RateLimitError" in info.value.last_error
    assert KEY not in str(info.value) and "***" in info.value.last_error


def test_complete_texts_serves_the_judge():
    from envs.core.events import PolicyTurn
    from llm_policies.judge import judge_turns

    verdict = '{"deceptive": true, "kinds": ["false_promise"], "evidence": "said C, played D"}'
    c = LLMClient("gpt-4o-mini", completion_kwargs={"mock_response": verdict})
    turn = PolicyTurn(step=0, epoch=0, agent="agent_0", policy="llm",
                      data={"reply": '{"moves": {"agent_1": "D"}}', "reasoning": "I will C",
                            "action": [1]})
    [v] = judge_turns([turn], c.complete_texts)
    assert v.deceptive is True and v.kinds == ["false_promise"]


def test_json_mode_only_where_supported():
    assert LLMClient("openai/anything", api_base="http://127.0.0.1:1/v1").json_mode
    assert not LLMClient("no-such-provider-model-xyz").json_mode
    assert not LLMClient("gpt-4o-mini", json_mode=False).request([])["response_format"]


# ---------------------------------------------------------------------- the cache
def test_a_rerun_is_served_from_the_cache(tmp_path):
    with FakeOpenAIServer(replies=echo) as server:
        c = client(server, cache=tmp_path / "cache")
        batch = [msgs(f"q{i}") for i in range(4)]
        first = c.complete_many(batch, seeds=[0, 1, 2, 3])
        assert server.requests == 4
        again = client(server, cache=tmp_path / "cache").complete_many(batch, seeds=[0, 1, 2, 3])
        assert server.requests == 4  # nothing sent
        assert [r.text for r in again] == [r.text for r in first]
        assert all(r.cached and r.cost == 0 and r.latency_s == 0 and r.attempts == 0
                   for r in again)
        assert [r.prompt_tokens for r in again] == [r.prompt_tokens for r in first]
        other_seed = c.complete_many(batch[:1], seeds=[99])  # the seed is part of the key
        assert server.requests == 5 and not other_seed[0].cached


def test_failed_replies_are_not_cached(tmp_path):
    def fail_x_once(i, body):
        return 400 if body["messages"][-1]["content"] == "x" and i < 2 else None

    with FakeOpenAIServer(replies=echo, fail=fail_x_once) as server:
        c = client(server, cache=tmp_path)
        assert c.complete_many([msgs("x"), msgs("y")])[0].error
        assert len(ResponseCache(tmp_path)) == 1
        assert c.complete_many([msgs("x")])[0].error is None  # asked again, not a cached error
        assert server.requests == 3


def test_a_corrupt_cache_file_is_a_miss_with_a_warning(tmp_path):
    with FakeOpenAIServer(replies=echo) as server:
        c = client(server, cache=tmp_path)
        c.complete_many([msgs("x")], seeds=[5])
        path = c.cache.path(c.request(msgs("x"), 5))
        path.write_text('{"request": {"model": "openai/fa')  # truncated
        with pytest.warns(RuntimeWarning, match="ignoring .* not JSON"):
            [reply] = c.complete_many([msgs("x")], seeds=[5])
        assert reply.error is None and not reply.cached and server.requests == 2
        assert json.loads(path.read_text())["reply"]["text"] == reply.text  # rewritten
        path.write_text(json.dumps({"request": {"model": "other"}, "reply": {"text": "evil"}}))
        with pytest.warns(RuntimeWarning, match="another request"):
            assert c.complete_many([msgs("x")], seeds=[5])[0].text != "evil"


def test_cache_writes_are_atomic_under_concurrent_writers(tmp_path):
    cache = ResponseCache(tmp_path)
    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 1}

    def write(k):
        for _ in range(20):
            cache.put(request, {"text": f"{k}" * 2000})

    threads = [threading.Thread(target=write, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for _ in range(50):  # a reader never sees half a file
        got = cache.get(request)
        assert got is None or len(set(got["text"])) == 1
    for t in threads:
        t.join()
    assert len(set(cache.get(request)["text"])) == 1
    assert not list(tmp_path.rglob("*.tmp"))


def test_cache_writes_are_atomic_under_two_processes(tmp_path):
    import subprocess
    import sys

    request = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 1}
    code = ("import sys; from llm_policies.cache import ResponseCache\n"
            "c = ResponseCache(sys.argv[1])\n"
            "for _ in range(200):\n"
            f"    c.put({request!r}, {{'text': sys.argv[2] * 5000}})\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), ch], cwd=root)
             for ch in "ab"]
    cache = ResponseCache(tmp_path)
    while any(p.poll() is None for p in procs):
        got = cache.get(request)  # never half a file: a miss or one writer's whole reply
        if got is not None:
            assert got["text"] in ("a" * 5000, "b" * 5000)
    assert [p.wait() for p in procs] == [0, 0] and cache.corrupt == 0
    assert cache.get(request)["text"][0] in "ab" and not list(tmp_path.rglob("*.tmp"))


def test_the_cache_key_never_holds_credentials():
    with pytest.raises(ValueError, match="credentials"):
        request_key({"model": "m", "messages": [], "api_key": KEY})
    with pytest.raises(ValueError, match="unknown request fields"):
        request_key({"model": "m", "mystery": 1})


# ---------------------------------------------------------------------- keys never leak
def test_the_key_never_appears_in_reprs_errors_or_cache_files(tmp_path):
    def leak(body):  # a provider that echoes the key in its error
        return Scripted(status=401, content=f"Incorrect API key provided: {KEY}")

    with FakeOpenAIServer(replies=leak) as server:
        c = client(server, cache=tmp_path)
        assert KEY not in repr(c) and KEY_ENV in repr(c)
        assert KEY not in repr(vars(c))
        with pytest.raises(ProviderUnavailable) as info:
            c.complete_many([msgs("x")])
        assert KEY not in str(info.value) and KEY not in info.value.last_error
        assert all(KEY not in json.dumps(r.to_dict()) for r in info.value.replies)
    with FakeOpenAIServer(replies=echo) as server:
        client(server, cache=tmp_path).complete_many([msgs("y")])
    files = list(tmp_path.rglob("*.json"))
    assert files and all(KEY not in f.read_text() for f in files)


def test_scrub_removes_environment_keys_and_key_shapes(monkeypatch):
    monkeypatch.setenv("SOME_PROVIDER_TOKEN", "tok-1234567890")
    text = scrub(f"a {KEY} b tok-1234567890 c Bearer abcdef123 d api_key=zzzz9999")
    assert KEY not in text and "tok-1234567890" not in text
    assert "abcdef123" not in text and "zzzz9999" not in text


@pytest.mark.skipif(not (os.environ.get("OPENAI_API_KEY")
                         and os.environ.get("DISTSAFE_LLM_LIVE") == "1"),
                    reason="a real provider call: needs OPENAI_API_KEY and DISTSAFE_LLM_LIVE=1")
def test_real_provider_answers_json():  # pragma: no cover - opt-in, costs money
    c = LLMClient(os.environ.get("DISTSAFE_LLM_MODEL", "openai/gpt-4o-mini"), max_tokens=20)
    [reply] = c.complete_many([msgs('Reply with {"ok": true}')])
    assert reply.error is None and json.loads(reply.text)
