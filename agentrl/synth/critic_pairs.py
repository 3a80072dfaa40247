"""Critic warm-start pairs (K2 §3.2.2: the critic ability is initialised in SFT): for a task whose demonstration
passed, replay the same task with one deliberate mistake and keep the pair when tool_world scores the two
differently.

The mistakes are the ones a small policy makes in RL (measured on the demo's SFT policy, BENCHMARKS.md "Fifth
session"): a *plausible* wrong value, not a typo. Another row's name, another enum value, another number in an
argument; another value of the same column in the final reply; stopping before the plan is done; skipping a
step; repeating a call until the step limit (the truncated loops of RL); calling another of the offered tools;
and `guessed`, the SFT policy's commonest failure on RL tasks (BENCHMARKS.md, "Eleventh session"): every lookup
skipped, a value it would have fetched made up (a fresh id the world does not hold, another row's name), then the
same call retried after its error until the step limit, or an apology. The label is never assumed from the
corruption: both episodes are scored by tool_world's own verifiable reward (final state + required outputs,
`WorldSession.finish`), and a pair is kept only when the demonstration scores strictly higher. A corruption that
happens not to matter (a lookup nobody reads) is dropped.

`CorruptingAgent` follows the gold plan from what it sees (no error model of its own) except for the one mistake,
drawn from its own seeded RNG, so adding pairs leaves the synth run's trajectories bit-identical.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from agentrl.synth.episodes import (
    AgentAction,
    Episode,
    is_transient_glitch,
    last_call,
    lookup_tools,
    run_episode,
)
from environments.tool_world.session import dumps
from environments.tool_world.spec import TaskSpec

KINDS = ("wrong_arg", "wrong_answer", "stopped_early", "skipped_step", "looped", "wrong_tool", "guessed")
_ID = re.compile(r"[A-Z0-9]{3,8}")
_ID_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def _state_values(task: TaskSpec) -> dict[str, list[Any]]:
    """column name -> the distinct values the task's initial state holds in that column (all tables)."""
    out: dict[str, list[Any]] = {}
    for rows in task.state.values():
        for row in rows:
            for col, v in row.items():
                if v not in out.setdefault(col, []):
                    out[col].append(v)
    return out


def _alternative(value: Any, key: str, task: TaskSpec, tool: str, rng: random.Random) -> Any | None:
    """A different, plausible value for argument `key` of `tool`: another enum member, another value of the same
    state column, another number; None when there is none."""
    schema = next((t.parameters for t in task.tools if t.name == tool), {})
    prop = (schema.get("properties") or {}).get(key) or {}
    if prop.get("enum"):
        pool = [v for v in prop["enum"] if v != value]
    elif isinstance(value, bool):
        pool = [not value]
    elif isinstance(value, int):
        pool = [v for v in range(max(0, value - 9), value + 10) if v != value]
    else:
        columns = _state_values(task)
        same = [col for col, vals in columns.items() if value in vals]
        pool = [v for col in same for v in columns[col] if v != value and isinstance(v, type(value))]
        if not pool and key in columns:
            pool = [v for v in columns[key] if v != value]
    return rng.choice(pool) if pool else None


def _guess(value: Any, key: str, task: TaskSpec, tool: str, rng: random.Random) -> Any | None:
    """What a policy that skipped the lookup writes for a value it should have fetched: an id-shaped string gets a
    fresh id of the same length that the world does not hold; anything else another plausible value."""
    if isinstance(value, str) and _ID.fullmatch(value):
        held = {str(v) for vals in _state_values(task).values() for v in vals}
        for _ in range(20):
            guess = "".join(rng.choice(_ID_CHARS) for _ in value)
            if guess not in held:
                return guess
        return None
    return _alternative(value, key, task, tool, rng)


def _wrong_answer(task: TaskSpec, rng: random.Random) -> str | None:
    """The gold answer with one required output swapped for another value of the same kind."""
    answer = task.answer
    columns = _state_values(task)
    for required in rng.sample(task.required_outputs, len(task.required_outputs)):
        if required not in answer:
            continue
        pool = [
            str(v)
            for vals in columns.values()
            if any(str(x) == required for x in vals)
            for v in vals
            if str(v) != required and required not in str(v)
        ]
        if not pool and required.lstrip("-").isdigit():
            pool = [str(int(required) + d) for d in (-3, -2, -1, 1, 2, 3)]
        if pool:
            return answer.replace(required, rng.choice(pool))
    return None


class CorruptingAgent:
    """The gold plan with exactly one mistake of kind `kind` (retries transient glitches like the demonstrator)."""

    def __init__(self, kind: str, rng: random.Random) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown corruption {kind!r}; choose from {KINDS}")
        self.kind, self.crng = kind, rng
        self.applied = False

    def start(self, task: TaskSpec, rng: random.Random) -> None:
        self.task, self.step, self.asked = task, 0, task.vague is None
        self.plan = list(task.gold)
        self.target = self.crng.randrange(len(self.plan)) if self.plan else 0
        if self.kind == "skipped_step" and len(self.plan) >= 2:
            del self.plan[self.target]
            self.applied = True
        self.retry_errors = False
        if self.kind == "guessed":
            lookups = lookup_tools(task)
            if any(g.name in lookups for g in self.plan):
                self.plan = [g for g in self.plan if g.name not in lookups]
                self.retry_errors = self.crng.random() < 0.5  # the RL loop, or a polite give-up
                self.applied = True
        self.stop_at = self.crng.randrange(1, len(self.plan)) if len(self.plan) >= 2 else None
        self.mistakes: list[str] = []

    def _call(self, index: int, said: str = "") -> AgentAction:
        call = self.plan[index]
        args = dict(call.arguments)
        if self.kind == "guessed" and self.applied:
            # what the user said is known; what a lookup would have said is made up
            for key, value in sorted(args.items()):
                if str(value) not in said:
                    guess = _guess(value, key, self.task, call.name, self.crng)
                    args[key] = value if guess is None else guess
        if self.kind == "wrong_tool" and index == self.target and not self.applied:
            others = [t.name for t in self.task.tools if t.name != call.name]
            if others:
                self.applied = True
                return AgentAction(calls=[(self.crng.choice(others), dumps(args))])
        if self.kind == "wrong_arg" and index == self.target and args:
            for key in self.crng.sample(sorted(args), len(args)):
                alt = _alternative(args[key], key, self.task, call.name, self.crng)
                if alt is not None:
                    args[key], self.applied = alt, True
                    break
        return AgentAction(calls=[(call.name, dumps(args))])

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AgentAction | None:
        last = messages[-1]
        if not self.asked:
            self.asked = True
            return AgentAction(text="Sure. What is the id?")
        if last["role"] == "tool":
            result = json.loads(last["content"])
            if is_transient_glitch(result):
                return AgentAction(calls=[last_call(messages)])
            if self.kind == "looped" and self.step == self.target:
                self.applied = True
                return AgentAction(calls=[last_call(messages)])  # the same call again, until the step limit
            if isinstance(result, dict) and "error" in result:
                if self.kind == "guessed" and self.retry_errors:
                    return AgentAction(calls=[last_call(messages)])
                if self.kind == "wrong_tool" and self.applied:
                    return self._call(self.step)  # back to the plan after the wrong tool's error
                return AgentAction(text="Sorry, I could not do that.")
            self.step += 1
        if self.kind == "stopped_early" and self.stop_at is not None and self.step == self.stop_at:
            self.applied = True
            return AgentAction(text=self.task.answer)
        if self.step < len(self.plan):
            said = " ".join(str(m.get("content") or "") for m in messages if m["role"] == "user")
            return self._call(self.step, said)
        guessing = self.kind == "guessed" and self.applied  # a guess answers wrong too
        if self.kind == "wrong_answer" or guessing:
            wrong = _wrong_answer(self.task, self.crng)
            if wrong is not None:
                self.applied = True
                return AgentAction(text=wrong)
        return AgentAction(text=self.task.answer)


def corrupted_episode(task: TaskSpec, seed: int, rng: random.Random) -> tuple[str, Episode] | None:
    """(kind, episode) for one applicable mistake drawn from `rng`, or None when none applies to this task."""
    for kind in rng.sample(KINDS, len(KINDS)):
        agent = CorruptingAgent(kind, random.Random(rng.random()))
        episode = run_episode(task, agent, seed)
        if agent.applied:
            return kind, episode
    return None


def critic_pair(good: Episode, seed: int, rng: random.Random) -> dict[str, Any] | None:
    """A critic-pair record for a demonstration `good`, or None when no mistake scored lower than it. A shortcut
    demonstration (`agent.shortcut_rate`) skips lookups the replay would make, so "fewer calls wins" would be a
    spurious cue: those get no pair."""
    if "shortcut" in good.mistakes:
        return None
    made = corrupted_episode(good.task, seed, rng)
    if made is None:
        return None
    kind, bad = made
    if not good.reward > bad.reward:
        return None
    task = good.task
    return {
        "task_id": task.id,
        "domain": task.domain,
        "corruption": kind,
        "good": {"messages": good.messages, "reward": good.reward},
        "bad": {"messages": bad.messages, "reward": bad.reward},
    }
