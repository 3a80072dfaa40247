"""The demo's tokenizer words and embedding kinds, read off the synth domains.

`tokenizer.entities` makes every closed-pool value one token, `tokenizer.key_tokens` every JSON argument key with its
punctuation (`"city":"`), and `entity_kind_init` gives the tokens of one kind (the values of a pool, the words that
name that kind in tool calls, the keys that take it) a shared initial direction (model/embedding_init.py), so a
from-scratch policy can read a value's kind from step 0. Not in K2 (its tokenizer has no value pools); demo-scale
choices measured in BENCHMARKS.md ("Eighth" and "Tenth session").
"""

from __future__ import annotations

from typing import Any


def entity_pools(domains: list[Any]) -> dict[str, tuple[str, ...]]:
    """The closed pools (by kind) of every domain the synth stage used."""
    from environments.tool_world.values import closed_pools

    return closed_pools(col for d in domains for col in d.value_columns())


def named_columns(domains: list[Any]) -> list[tuple[str, Any]]:
    """(column name, column) for every table column of `domains`, the input of `tool_world.values.kind_words`."""
    return [(name, col) for d in domains for t in d.tables.values() for name, col in t.columns.items()]


def with_kind_words(pools: dict[str, tuple[str, ...]], domains: list[Any]) -> dict[str, tuple[str, ...]]:
    """The value pools plus the words that name each kind in tool calls (`tool_world.values.kind_words`); a word
    joins only the first kind it appears in (kinds in sorted order), so no token gets two kind directions."""
    from environments.tool_world.values import kind_words

    words = kind_words(named_columns(domains))
    merged = {kind: (*pools.get(kind, ()), *words.get(kind, ())) for kind in sorted({*pools, *words})}
    seen: set[str] = set()
    out = {}
    for kind, tokens in merged.items():
        out[kind] = tuple(t for t in dict.fromkeys(tokens) if t not in seen)
        seen.update(out[kind])
    return out


def key_tokens(domains: list[Any]) -> dict[str, str | None]:
    """`"name":"` for every string argument of the domains' tools and every string column of their tables (tool
    results print rows in the same compact JSON), mapped to the kind of value it takes (`name`, `place`, `word`,
    `enum:<column>`; None for ids and other columns) per `tool_world.values.kind_words`."""
    from environments.tool_world.values import kind_words

    named = named_columns(domains)
    kind_of = {word: kind for kind, words in kind_words(named).items() for word in words}
    names = {name for name, col in named if col.gen != "int"}
    for d in domains:
        for tool in d.tools:
            props = tool.parameters.get("properties", {})
            names.update(n for n, schema in props.items() if schema.get("type") == "string")
    return {f'"{name}":"': kind_of.get(name) for name in sorted(names)}


def with_key_tokens(
    pools: dict[str, tuple[str, ...]], keys: dict[str, str | None]
) -> dict[str, tuple[str, ...]]:
    """Each key token joins the kind of the value it takes (a key without one keeps its own embedding)."""
    out = dict(pools)
    for key, kind in keys.items():
        if kind is not None:
            out[kind] = (*out.get(kind, ()), key)
    return out
