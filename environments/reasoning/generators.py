"""Seeded offline generators of single-answer tasks with exact checkers (no downloads, stdlib only).

Each family maps a seed to (question, answer, meta) deterministically; `check(family, meta, answer)` is the
verifier. These back the reasoning env when `reasoning-gym` is absent; with it, any of its datasets can be
requested too (see env.py). K2 §3.2: RL on verifiable single-answer problems (math, logic puzzles).
"""

from __future__ import annotations

import ast
import itertools
import math
import operator
import random
from collections.abc import Callable
from fractions import Fraction
from typing import Any

Task = tuple[str, str, dict[str, Any]]


def _arithmetic(rng: random.Random) -> Task:
    n = rng.randint(3, 5)
    nums = [rng.randint(-50, 99) for _ in range(n)]
    ops = [rng.choice("+-*") for _ in range(n - 1)]
    expr = str(nums[0])
    for op, x in zip(ops, nums[1:], strict=True):
        expr += f" {op} {x if x >= 0 else f'({x})'}"
    value = _safe_eval(expr)
    return f"Compute {expr}. Answer with the integer only.", str(value), {}


def _linear_equation(rng: random.Random) -> Task:
    a = rng.choice([i for i in range(-9, 10) if i not in (0,)])
    x = rng.randint(-20, 20)
    b = rng.randint(-50, 50)
    c = a * x + b
    return f"Solve for x: {a}*x + ({b}) = {c}. Answer with the integer value of x.", str(x), {}


def _gcd_lcm(rng: random.Random) -> Task:
    a, b = rng.randint(6, 400), rng.randint(6, 400)
    if rng.random() < 0.5:
        return f"What is the greatest common divisor of {a} and {b}?", str(math.gcd(a, b)), {}
    return f"What is the least common multiple of {a} and {b}?", str(a * b // math.gcd(a, b)), {}


def _modular(rng: random.Random) -> Task:
    b, e, m = rng.randint(2, 50), rng.randint(2, 60), rng.randint(3, 97)
    return f"What is {b}^{e} mod {m}?", str(pow(b, e, m)), {}


def _sort_numbers(rng: random.Random) -> Task:
    xs = rng.sample(range(-99, 100), rng.randint(5, 9))
    q = f"Sort these numbers in ascending order, comma-separated: {', '.join(map(str, xs))}"
    return q, ", ".join(map(str, sorted(xs))), {}


def _letter_count(rng: random.Random) -> Task:
    words = ["banana", "mississippi", "bookkeeper", "committee", "assessment", "parallel", "cocoa", "referee"]
    w = rng.choice(words)
    ch = rng.choice(sorted(set(w)))
    return f"How many times does the letter '{ch}' appear in the word '{w}'?", str(w.count(ch)), {}


def _solvable24(nums: list[int]) -> bool:
    def rec(vals: list[Fraction]) -> bool:
        if len(vals) == 1:
            return vals[0] == 24
        for i, j in itertools.permutations(range(len(vals)), 2):
            rest = [v for k, v in enumerate(vals) if k not in (i, j)]
            a, b = vals[i], vals[j]
            cands = [a + b, a - b, a * b] + ([a / b] if b != 0 else [])
            if any(rec(rest + [c]) for c in cands):
                return True
        return False

    return rec([Fraction(n) for n in nums])


def _game24(rng: random.Random) -> Task:
    while True:
        nums = [rng.randint(1, 13) for _ in range(4)]
        if _solvable24(nums):
            break
    q = (
        f"Use each of the numbers {', '.join(map(str, nums))} exactly once with +, -, *, / and parentheses "
        "to make 24. Answer with the expression only."
    )
    return q, "", {"numbers": nums}


FAMILIES: dict[str, Callable[[random.Random], Task]] = {
    "arithmetic": _arithmetic,
    "linear_equation": _linear_equation,
    "gcd_lcm": _gcd_lcm,
    "modular": _modular,
    "sort_numbers": _sort_numbers,
    "letter_count": _letter_count,
    "game24": _game24,
}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _safe_eval(expr: str) -> Fraction:
    """Evaluate + - * / on integer literals exactly (no names, calls or powers)."""

    def ev(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int)
            and not isinstance(node.value, bool)
        ):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise ZeroDivisionError("division by zero")
            return _BINOPS[type(node.op)](left, right)
        raise ValueError(f"unsupported expression element: {type(node).__name__}")

    if len(expr) > 200:
        raise ValueError("expression too long")
    return ev(ast.parse(expr, mode="eval"))


def generate(family: str, seed: int) -> Task:
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family](random.Random(f"{family}:{seed}"))


def _norm(s: str) -> str:
    return " ".join(s.replace(",", " , ").split()).strip().rstrip(".")


def check(family: str, answer: str, expected: str, meta: dict[str, Any]) -> bool:
    """Exact verification of an extracted answer."""
    answer = answer.strip()
    if family == "game24":
        try:
            tree = ast.parse(answer, mode="eval")
            used = sorted(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant))
            return used == sorted(meta["numbers"]) and _safe_eval(answer) == 24
        except (SyntaxError, ValueError, ZeroDivisionError, TypeError):
            return False
    if family == "sort_numbers":
        return _norm(answer) == _norm(expected)
    try:
        return Fraction(answer.replace(" ", "")) == Fraction(expected)
    except (ValueError, ZeroDivisionError):
        return _norm(answer).lower() == _norm(expected).lower()
