"""The demo's kind-structured init with `entity_kind_keys`: each kind's key words join its values, no token twice."""

from __future__ import annotations

from agentrl.demo.vocab import entity_pools, key_tokens, with_key_tokens, with_kind_words
from environments.tool_world.domains import builtin_domains


def test_key_words_join_their_kind_and_no_token_gets_two_directions():
    domains = builtin_domains()
    pools = entity_pools(domains)
    kinds = with_kind_words(pools, domains)
    for kind, values in pools.items():  # every value stays in its kind, first
        assert kinds[kind][: len(values)] == values
    assert {"patient", "doctor"} <= set(kinds["name"]) and "day" in kinds["enum:day"]
    tokens = [t for ts in kinds.values() for t in ts]
    assert len(tokens) == len(set(tokens))


def test_key_tokens_cover_every_string_argument_and_join_their_value_kind():
    domains = builtin_domains()
    keys = key_tokens(domains)
    for d in domains:
        for tool in d.tools:
            for name, schema in tool.parameters.get("properties", {}).items():
                assert (f'"{name}":"' in keys) == (schema.get("type") == "string"), (tool.name, name)
    assert keys['"patient":"'] == "name" and keys['"day":"'] == "enum:day" and keys['"id":"'] is None
    kinds = with_key_tokens(entity_pools(domains), keys)
    assert '"patient":"' in kinds["name"] and not any('"id":"' in ts for ts in kinds.values())
