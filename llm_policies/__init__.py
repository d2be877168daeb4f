"""LLM-backed policies (litellm): prompts, personas, parsing, cost, cache, async batching.

Empty in the foundation release; they implement :class:`baselines.policy.Policy` and read
``infos[agent]["view"]``.
"""
