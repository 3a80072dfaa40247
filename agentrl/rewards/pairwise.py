"""From pairwise critic outcomes to per-sample rewards (K2 §3.2.2, Self-Critique Rubric Reward).

K2's critic ranks the K samples of a prompt by pairwise evaluation; how pairwise outcomes become scalar
rewards is not specified (k2.md §4.4, [reconstructed]). Both options here are configurable:

- `win_rate`: wins / games per sample, a tie counts half; an abstained comparison is dropped.
- `bradley_terry`: strengths pi_i with P(i beats j) = pi_i / (pi_i + pi_j), fitted by Hunter's (2004) MM
  algorithm. The prior is `prior_games` virtual games (half won, half lost) against a fixed reference of
  strength 1, which keeps the fit finite when a sample wins or loses everything and shrinks small groups
  toward equal strengths. Reward = mean over siblings of P(i beats j), in [0, 1] like the win rate.

Position bias: every pair is judged in both orders (i shown as A, then as B). Both orders are pooled as
ordinary games, so a critic that leans toward position A by a constant amount gives each sample the same extra
wins and losses, and the bias cancels. `both_orders_pairs` builds the comparison list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Winner = Literal["A", "B", "tie"]


@dataclass(frozen=True)
class Comparison:
    """Sample `a` was shown as Response A and sample `b` as Response B; `winner` None = abstained."""

    a: int
    b: int
    winner: Winner | None


class PairwiseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: Literal["win_rate", "bradley_terry"] = "bradley_terry"
    prior_games: float = Field(default=1.0, ge=0.0, description="Virtual games vs a strength-1 reference.")
    max_iter: int = Field(default=500, ge=1)
    tol: float = Field(default=1e-9, gt=0)


def both_orders_pairs(k: int) -> list[tuple[int, int]]:
    """All ordered pairs (i, j), i != j: each unordered pair appears once per order."""
    return [p for i, j in combinations(range(k), 2) for p in ((i, j), (j, i))]


def win_matrix(k: int, comparisons: Sequence[Comparison]) -> list[list[float]]:
    """w[i][j] = games i won against j (ties count half to each side)."""
    w = [[0.0] * k for _ in range(k)]
    for c in comparisons:
        if not (0 <= c.a < k and 0 <= c.b < k) or c.a == c.b:
            raise ValueError(
                f"comparison ({c.a}, {c.b}) is out of range for {k} samples or compares a sample to itself"
            )
        if c.winner is None:
            continue
        if c.winner == "A":
            w[c.a][c.b] += 1.0
        elif c.winner == "B":
            w[c.b][c.a] += 1.0
        elif c.winner == "tie":
            w[c.a][c.b] += 0.5
            w[c.b][c.a] += 0.5
        else:
            raise ValueError(f"winner must be 'A', 'B', 'tie' or None, got {c.winner!r}")
    return w


def win_rate(k: int, comparisons: Sequence[Comparison]) -> list[float]:
    """Wins / games; a sample with no decided games gets 0.5 (no evidence either way)."""
    w = win_matrix(k, comparisons)
    out = []
    for i in range(k):
        won = sum(w[i])
        games = won + sum(w[j][i] for j in range(k))
        out.append(won / games if games else 0.5)
    return out


def bradley_terry_strengths(
    k: int,
    comparisons: Sequence[Comparison],
    *,
    prior_games: float = 1.0,
    max_iter: int = 500,
    tol: float = 1e-9,
) -> list[float]:
    """MM updates: pi_i <- W_i / sum_j n_ij / (pi_i + pi_j), the reference player included."""
    w = win_matrix(k, comparisons)
    n = [[w[i][j] + w[j][i] for j in range(k)] for i in range(k)]
    wins = [sum(w[i]) + prior_games / 2 for i in range(k)]
    pi = [1.0] * k
    for _ in range(max_iter):
        new = []
        for i in range(k):
            denom = sum(n[i][j] / (pi[i] + pi[j]) for j in range(k) if j != i and n[i][j])
            denom += prior_games / (pi[i] + 1.0)
            if denom == 0.0 or wins[i] == 0.0:
                # No games and no prior: strength is unidentifiable; keep the neutral value.
                new.append(1.0 if denom == 0.0 else 1e-12)
            else:
                new.append(wins[i] / denom)
        if prior_games == 0.0:  # no anchor: BT is scale-free, so pin the geometric mean to 1
            g = math.exp(sum(math.log(x) for x in new) / k)
            new = [x / g for x in new]
        delta = max(abs(math.log(a) - math.log(b)) for a, b in zip(new, pi, strict=True))
        pi = new
        if delta < tol:
            break
    return pi


def bradley_terry(k: int, comparisons: Sequence[Comparison], **kw: float) -> list[float]:
    """Mean over siblings of P(i beats j) under the fitted strengths."""
    if k == 1:
        return [0.5]
    pi = bradley_terry_strengths(k, comparisons, **kw)  # type: ignore[arg-type]
    return [sum(pi[i] / (pi[i] + pi[j]) for j in range(k) if j != i) / (k - 1) for i in range(k)]


def pairwise_rewards(
    k: int, comparisons: Sequence[Comparison], config: PairwiseConfig | None = None
) -> list[float]:
    config = config or PairwiseConfig()
    if k < 1:
        raise ValueError("need at least one sample")
    if config.method == "win_rate":
        return win_rate(k, comparisons)
    return bradley_terry(
        k, comparisons, prior_games=config.prior_games, max_iter=config.max_iter, tol=config.tol
    )


def position_bias(comparisons: Sequence[Comparison]) -> float:
    """Share of decided, non-tie verdicts that picked position A (0.5 = unbiased); a monitoring metric."""
    decided = [c for c in comparisons if c.winner in ("A", "B")]
    return sum(c.winner == "A" for c in decided) / len(decided) if decided else 0.5
