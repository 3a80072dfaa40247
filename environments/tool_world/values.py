"""Entity values for task states, with a train / held-out partition that never overlaps.

Tiny policies can learn to *copy* an id or a name from the user message or a tool result, but they cannot be
allowed to memorise them: held-out tasks must use values never seen in training. Every generated string value
is assigned to a partition by a stable hash (crc32), so the property holds across runs, seeds and processes
without keeping a registry. Names and places are made from syllables (short, pronounceable, unlimited);
codes are a prefix plus three characters from an alphabet without look-alikes (0/O, 1/I/L).

The `closed` partition is the other choice, for policies too small to learn multi-token copying in minutes (the CPU
demo): every name, place, word and code comes from a fixed pool shared by all splits (`closed_pool`), and
`closed_vocabulary` lists the pool so a tokenizer can make each value one token. Held-out tasks are then new
states and requests over known values: the policy must still read the value from the user message or a tool
result (a pool of 64 names leaves a 1-in-64 guess), but it copies one token instead of spelling an unseen word.
"""

from __future__ import annotations

import functools
import random
import zlib
from collections.abc import Iterable

from environments.tool_world.spec import ColumnSpec

CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
_ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]
_PLACE_ENDS = ["", "", "n", "r", "s"]
HELDOUT_BUCKETS = 8  # 1 in 8 values belongs to the held-out partition

SPLIT_TRAIN = "train"
SPLIT_HELDOUT = "heldout"
SPLIT_CLOSED = "closed"  # fixed shared pools (see the module docstring)
POOL_SIZES = {"name": 64, "place": 32, "word": 32, "code": 40}


def partition(value: str) -> str:
    """The partition a string value belongs to: 'heldout' for 1 in HELDOUT_BUCKETS, else 'train'."""
    return SPLIT_HELDOUT if zlib.crc32(value.lower().encode()) % HELDOUT_BUCKETS == 0 else SPLIT_TRAIN


def _syllables(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n))


def _raw(col: ColumnSpec, rng: random.Random) -> str | int:
    if col.gen == "code":
        return col.prefix + "".join(rng.choice(CODE_ALPHABET) for _ in range(3))
    if col.gen == "name":
        return _syllables(rng, 2).capitalize()
    if col.gen == "place":
        return (_syllables(rng, rng.choice((2, 3))) + rng.choice(_PLACE_ENDS)).capitalize()
    if col.gen == "word":
        return _syllables(rng, 2)
    if col.gen == "enum":
        return rng.choice(col.values)
    return rng.randint(col.lo, col.hi)


@functools.cache
def closed_pool(gen: str, prefix: str = "") -> tuple[str, ...]:
    """The fixed pool of `gen` values (codes: per prefix), the same in every run and process."""
    rng = random.Random(f"agentrl-pool:{gen}:{prefix}")
    col = ColumnSpec(gen=gen, prefix=prefix)
    pool: dict[str, None] = {}
    while len(pool) < POOL_SIZES[gen]:
        pool[str(_raw(col, rng))] = None
    return tuple(pool)


def _pool_of(col: ColumnSpec) -> tuple[str, ...]:
    return closed_pool(col.gen, col.prefix if col.gen == "code" else "")


def closed_vocabulary(columns: Iterable[ColumnSpec]) -> list[str]:
    """Every value the `closed` partition can draw for `columns` (sorted, no duplicates)."""
    return sorted({v for pool in closed_pools(columns).values() for v in pool})


def closed_pools(columns: Iterable[ColumnSpec]) -> dict[str, tuple[str, ...]]:
    """The closed pools `columns` draw from, by kind: `name`, `place`, `word`, and `code:<prefix>` per prefix."""
    pools = {}
    for col in columns:
        if col.gen in POOL_SIZES:
            pools[f"code:{col.prefix}" if col.gen == "code" else col.gen] = _pool_of(col)
    return pools


def kind_words(named_columns: Iterable[tuple[str, ColumnSpec]]) -> dict[str, tuple[str, ...]]:
    """Words that say which kind a tool argument takes, by kind, from (column name, column) pairs: a name, place or
    word column's name joins that closed pool's kind (`court` with the places, `patient` with the names); an enum
    column's name and its values form their own kind (`enum:status`: status, filed, heard, ...). Id columns are
    left out (ids already copy well, and `id` would join every code kind)."""
    kinds: dict[str, dict[str, None]] = {}
    for name, col in named_columns:
        if col.gen in ("name", "place", "word"):
            kinds.setdefault(col.gen, {})[name] = None
        elif col.gen == "enum":
            kinds.setdefault(f"enum:{name}", {name: None}).update(dict.fromkeys(col.values))
    return {kind: tuple(words) for kind, words in kinds.items()}


def draw(col: ColumnSpec, rng: random.Random, split: str, exclude: set | None = None) -> str | int:
    """One value for `col` in partition `split`; enum and int values are shared vocabulary (not partitioned)."""
    exclude = exclude or set()
    if split == SPLIT_CLOSED and col.gen in POOL_SIZES:
        free = [v for v in _pool_of(col) if v not in exclude]
        if not free:
            raise RuntimeError(f"closed {col.gen} pool exhausted ({POOL_SIZES[col.gen]} values all taken)")
        return rng.choice(free)
    for _ in range(1000):
        v = _raw(col, rng)
        if v in exclude:
            continue
        if isinstance(v, str) and col.gen != "enum" and partition(v) != split:
            continue
        return v
    if col.gen in ("enum", "int"):  # a small shared vocabulary may be all taken: any value will do
        return _raw(col, rng)
    raise RuntimeError(f"could not draw a fresh {col.gen} value for split {split!r} (pool exhausted)")
