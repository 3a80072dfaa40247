"""A tiny stateful tool environment (a key-value store) used by protocol tests and `agentrl bench envs`.

Task: the prompt asks the agent to store some pairs and then answer with one value; the reward checks
both the final state (every pair stored) and the answer, in the tau-bench manner (final-state + output).
"""

from __future__ import annotations

import copy
import random
from typing import Any

from environments.protocol.environment import EnvError, ToolEnvironment, UnknownTaskError
from environments.protocol.schemas import Message, Observation, StepResult
from environments.protocol.tools import ToolError, ToolRegistry

TASKS: dict[str, dict[str, Any]] = {
    "kv-1": {"pairs": {"color": "blue"}, "ask": "color"},
    "kv-2": {"pairs": {"city": "Paris", "year": "1889"}, "ask": "year"},
}


class KeyValueEnv(ToolEnvironment):
    name = "kv"
    description = "Store key-value pairs with tools, then answer with the value of one key."
    version = "0.1.0"

    def __init__(self) -> None:
        super().__init__()
        self.store: dict[str, str] = {}
        self.task: dict[str, Any] = {}
        reg = ToolRegistry()

        @reg.tool(description="Store a value under a key (overwrites).")
        def set_value(key: str, value: str) -> str:
            if len(self.store) >= 1000:
                raise ToolError("store is full (1000 keys)")
            self.store[key] = value
            return "ok"

        @reg.tool(description="Read the value stored under a key.")
        def get_value(key: str) -> str:
            if key not in self.store:
                raise ToolError(f"no such key: {key!r}")
            return self.store[key]

        @reg.tool(description="List stored keys.")
        def list_keys() -> list[str]:
            return sorted(self.store)

        self.registry = reg

    def task_ids(self) -> list[str]:
        return sorted(TASKS)

    def reset(
        self, task_id: str | None = None, task_spec: dict[str, Any] | None = None, seed: int | None = None
    ) -> Observation:
        if task_spec is not None:
            pairs, ask = task_spec.get("pairs"), task_spec.get("ask")
            if not isinstance(pairs, dict) or not pairs or ask not in pairs:
                raise EnvError("task_spec needs 'pairs' (non-empty object) and 'ask' (one of its keys)")
            self.task = {"pairs": {str(k): str(v) for k, v in pairs.items()}, "ask": str(ask)}
        elif task_id is not None:
            if task_id not in TASKS:
                raise UnknownTaskError(f"unknown task {task_id!r}; known: {', '.join(sorted(TASKS))}")
            self.task = copy.deepcopy(TASKS[task_id])
        else:
            rng = random.Random(seed)
            task_id = rng.choice(sorted(TASKS))
            self.task = copy.deepcopy(TASKS[task_id])
        pairs = ", ".join(f"{k}={v}" for k, v in self.task["pairs"].items())
        prompt = f"Store these pairs: {pairs}. Then answer with the value of {self.task['ask']!r}."
        return Observation(
            task_id=task_id,
            messages=[Message(role="system", content=self.description), Message(role="user", content=prompt)],
            tools=self.registry.openai(),
        )

    def finish(self, answer: str) -> StepResult:
        stored = all(self.store.get(k) == v for k, v in self.task["pairs"].items())
        correct = answer.strip() == self.task["pairs"][self.task["ask"]]
        reward = 1.0 if stored and correct else 0.0
        return StepResult(reward=reward, done=True, info={"state_ok": stored, "answer_ok": correct})

    def state(self) -> dict[str, Any]:
        return {"store": dict(self.store), "steps": self.steps}

    def snapshot(self) -> Any:
        return dict(self.store), self.steps, self.done

    def restore(self, snapshot: Any) -> None:
        store, self.steps, self.done = snapshot
        self.store.clear()
        self.store.update(store)


def create_app():  # noqa: ANN201 - FastAPI, imported lazily to keep this module light
    """A server for the demo env (`uvicorn --factory environments.protocol.demo:create_app`)."""
    from environments.protocol.app import create_env_app

    return create_env_app(KeyValueEnv)
