"""Reasoning environment: one verifiable question, one final answer, reward 1 if it checks out.

Tasks: `FAMILY:SEED` ids from the built-in seeded generators (generators.py), or a task spec
`{"source": "reasoning_gym", "dataset": NAME, "seed": S, "index": I}` served by the `reasoning-gym` package
when it is installed (its `score_answer` is the verifier), or an inline `{"question", "answer"}` spec.
The answer is read from `<answer>...</answer>`, else `\\boxed{...}`, else the last non-empty line.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from typing import Any

from environments.protocol import (
    EnvError,
    Message,
    Observation,
    StepResult,
    ToolEnvironment,
    UnknownTaskError,
)
from environments.reasoning import generators

SYSTEM = "Solve the problem. Think as needed, then give only the final answer inside <answer></answer> tags."


def extract_answer(text: str) -> str:
    m = re.findall(r"<answer>(.*?)</answer>", text, flags=re.S | re.I)
    if m:
        return m[-1].strip()
    m = re.findall(r"\\boxed\{([^{}]*)\}", text)
    if m:
        return m[-1].strip()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


@lru_cache(maxsize=64)
def _rg_dataset(name: str, seed: int, size: int) -> Any:
    try:
        import reasoning_gym  # heavy (seconds to import), so only when asked for
    except ImportError as exc:
        raise EnvError("reasoning-gym is not installed on this server (pip install reasoning-gym)") from exc
    try:
        return reasoning_gym.create_dataset(name, size=size, seed=seed)
    except Exception as exc:  # unknown dataset names raise assorted errors upstream
        raise EnvError(f"reasoning-gym cannot create dataset {name!r}: {exc}") from exc


class ReasoningEnv(ToolEnvironment):
    name = "reasoning"
    description = "Verifiable single-answer reasoning tasks (arithmetic, equations, 24-game, reasoning-gym)."
    version = "0.1.0"
    max_steps = 1

    def __init__(self) -> None:
        super().__init__()
        self.task: dict[str, Any] = {}
        self.result: dict[str, Any] = {}

    def task_ids(self) -> list[str]:
        return [f"{f}:{s}" for f in generators.FAMILIES for s in range(3)]

    def reset(
        self, task_id: str | None = None, task_spec: dict[str, Any] | None = None, seed: int | None = None
    ) -> Observation:
        if task_spec is not None:
            self.task = self._from_spec(task_spec)
        else:
            if task_id is None:
                rng = random.Random(seed)
                task_id = f"{rng.choice(sorted(generators.FAMILIES))}:{rng.randrange(10**6)}"
            family, _, s = task_id.partition(":")
            if family not in generators.FAMILIES or not s.isdigit():
                raise UnknownTaskError(
                    f"unknown task {task_id!r}: use FAMILY:SEED with FAMILY in {', '.join(generators.FAMILIES)}"
                )
            q, a, meta = generators.generate(family, int(s))
            self.task = {
                "id": task_id,
                "kind": "builtin",
                "family": family,
                "question": q,
                "answer": a,
                "meta": meta,
            }
        return Observation(
            task_id=self.task["id"],
            messages=[
                Message(role="system", content=SYSTEM),
                Message(role="user", content=self.task["question"]),
            ],
            tools=[],
        )

    def _from_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        if spec.get("source") == "reasoning_gym":
            name, s, idx = spec.get("dataset"), spec.get("seed", 0), spec.get("index", 0)
            if (
                not isinstance(name, str)
                or not isinstance(s, int)
                or not isinstance(idx, int)
                or not 0 <= idx < 1000
            ):
                raise EnvError("reasoning_gym spec needs dataset (str), seed (int) and index (0..999)")
            ds = _rg_dataset(name, s, idx + 1)
            entry = ds[idx]
            return {
                "id": f"rg:{name}:{s}:{idx}",
                "kind": "rg",
                "question": entry["question"],
                "entry": entry,
                "ds": ds,
            }
        q, a = spec.get("question"), spec.get("answer")
        if not isinstance(q, str) or not isinstance(a, str | int | float):
            raise EnvError(
                "task_spec needs 'question' (string) and 'answer' (string or number), or source=reasoning_gym"
            )
        return {
            "id": spec.get("id"),
            "kind": "inline",
            "family": "inline",
            "question": q,
            "answer": str(a),
            "meta": {},
        }

    def finish(self, answer: str) -> StepResult:
        extracted = extract_answer(answer)
        if self.task["kind"] == "rg":
            score = float(self.task["ds"].score_answer(extracted, self.task["entry"]) or 0.0)
        else:
            ok = generators.check(self.task["family"], extracted, self.task["answer"], self.task["meta"])
            score = 1.0 if ok else 0.0
        self.result = {"extracted": extracted, "correct": score >= 1.0}
        return StepResult(reward=score, done=True, info=dict(self.result))

    def state(self) -> dict[str, Any]:
        return {"task_id": self.task.get("id"), "steps": self.steps, **self.result}
