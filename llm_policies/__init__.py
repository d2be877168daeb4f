"""LLM-backed policies (litellm): prompts, personas and strategies, parsing, cost, cache,
batched requests.

============================  ==============================================================
module                        what it holds
============================  ==============================================================
``llm_policies.policy``       :class:`LLMPolicy` (``type: llm`` in a scenario): reads
                              ``infos[agent]["view"]``, one request per agent and step
``llm_policies.client``       :class:`LLMClient` (concurrency, timeouts, retries, cost),
                              :class:`Reply`, :class:`ProviderUnavailable`
``llm_policies.cache``        :class:`ResponseCache`: replies on disk, keyed by the request
``llm_policies.prompts``      chat messages from a view; templates in ``templates/``;
                              untrusted-data blocks
``llm_policies.parsing``      :func:`parse_reply`: reply -> action, per field, safe fallbacks
``llm_policies.fake_server``  :class:`FakeOpenAIServer`, an OpenAI-compatible server for tests
``llm_policies.judge``        deception labels of what agents said
``llm_policies.conversations``  one HTML page of a run's turns
============================  ==============================================================

litellm is an optional extra (``pip install -e '.[llm]'``): nothing here imports it until a
client is needed, and the names above are imported on first use (``from llm_policies import
LLMPolicy``). litellm's model cost map is read from the installed package, never fetched
(``LITELLM_LOCAL_MODEL_COST_MAP``, unless the environment says otherwise).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__all__ = ["FakeOpenAIServer", "LLMClient", "LLMPolicy", "Parsed", "ProviderUnavailable",
           "Reply", "ResponseCache", "build_messages", "parse_reply"]

_WHERE = {"LLMPolicy": "policy", "LLMClient": "client", "Reply": "client",
          "ProviderUnavailable": "client", "ResponseCache": "cache",
          "build_messages": "prompts", "parse_reply": "parsing", "Parsed": "parsing",
          "FakeOpenAIServer": "fake_server"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"llm_policies.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'llm_policies' has no attribute {name!r}")
