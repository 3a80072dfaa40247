"""Multi-turn trajectories: an agent policy, the user simulator and tool_world (K2 §3.1, stage 3).

`run_episode` drives one task: the agent acts (tool calls or text), tool_world answers each call, and the user
simulator answers text that is not final. Messages are OpenAI format with K2's tool-call ids
`functions.{name}:{idx}`, idx counting from 0 over the whole dialog (K2 App. B; the same counter at training and
inference). `ProceduralAgent` is the offline demonstrator: it follows the task's gold plan, but with a seeded
error model (typos in copied values, giving up after a transient failure, a final reply that omits the value,
stopping early) so the judge has something to reject and some kept demonstrations contain a recovered mistake.
With `shortcut_rate` it also skips lookups now and then, acting on world state it was never shown (a privileged
shortcut an outcome judge cannot tell from a lucky guess; the policy trained on it has to guess). With `guess_rate`
some of those skips are guesses instead: the first write goes out with a made-up id, tool_world answers not-found,
and the demonstrator then makes the lookup it skipped (a recovery the policy can imitate). Tasks whose reply
must state grounded values (`TaskSpec.grounded_outputs`) are never shortcut: tool_world scores such a reply 0
unless a tool result or the user said the value (the synth judge can play tasks ungrounded, see JudgeConfig).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentrl.synth.config import AgentConfig
from environments.tool_world.session import WorldSession, dumps
from environments.tool_world.spec import GoldCall, TaskSpec
from environments.tool_world.user_sim import UserSimulator
from environments.tool_world.values import closed_pool


@dataclass
class AgentAction:
    calls: list[tuple[str, str]] = field(default_factory=list)  # (tool name, JSON arguments)
    text: str | None = None  # a reply to the user (final unless the user simulator answers it)


class Policy(Protocol):
    def start(self, task: TaskSpec, rng: random.Random) -> None: ...

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AgentAction | None:
        """The next action; None means the backend produced nothing usable (the episode is dropped)."""


def _typo(value: str, rng: random.Random) -> str:
    if len(value) < 2:
        return value + "x"
    i = rng.randrange(len(value))
    alt = rng.choice([c for c in "ABCDEFGHJKMNPQRSTUVWXYZ23456789aeiou" if c != value[i]])
    return value[:i] + alt + value[i + 1 :]


def _wrong_id(value: str, rng: random.Random) -> str:
    """Another id of the same shape: a code from the same closed pool when `value` is one (one token for the
    demo's tokenizer, like the ids a policy guesses), else `value` with one character changed."""
    pool = closed_pool("code", value[:1]) if value else ()
    if value in pool:
        return rng.choice([v for v in pool if v != value])
    return _typo(value, rng)


def is_transient_glitch(result: Any) -> bool:
    """tool_world's injected transient failures (busy, partial result): the demonstrator retries the same call."""
    return isinstance(result, dict) and bool(
        result.get("error") == "busy, try again" or result.get("partial")
    )


class ProceduralAgent:
    """Follows the gold plan from what it sees, with the seeded error model of `AgentConfig`."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg

    def start(self, task: TaskSpec, rng: random.Random) -> None:
        self.task, self.rng = task, rng
        self.step = 0
        self.asked = task.vague is None
        self.pending: GoldCall | None = None
        self.pending_ok = True  # was the pending call issued correctly?
        self.mistakes: list[str] = []
        self.plan = list(task.gold)
        # A grounded answer (TaskSpec.grounded_outputs) scores only if a tool result said it: never skip its lookup.
        answers_from_lookup = bool(task.required_outputs) and task.grounded_outputs
        # No draw at rate 0, so the default episodes stay bit-identical.
        personas = self.cfg.shortcut_personas
        rate = (
            self.cfg.shortcut_rate
            if not personas or task.persona in personas
            else self.cfg.shortcut_rate_others
        )
        self.guess: GoldCall | None = None  # a write to issue on a guessed id before its lookup
        self.guessing = False  # is the pending call that guess?
        if rate > 0 and not answers_from_lookup:
            lookups = lookup_tools(task)
            if any(g.name in lookups for g in task.gold) and rng.random() < rate:
                writes = [g for g in task.gold if g.name not in lookups]
                if writes and self.cfg.guess_rate > 0 and rng.random() < self.cfg.guess_rate:
                    self.guess = writes[0]
                else:
                    self.plan = writes
                    self.mistakes.append("shortcut")

    def _call(self, call: GoldCall) -> AgentAction:
        args = dict(call.arguments)
        self.pending, self.pending_ok = call, True
        strings = [k for k, v in args.items() if isinstance(v, str)]
        if strings and self.rng.random() < self.cfg.error_rate:
            k = self.rng.choice(strings)
            args[k] = _typo(args[k], self.rng)
            self.pending_ok = False
            self.mistakes.append("typo")
        return AgentAction(calls=[(call.name, dumps(args))])

    def _guessed(self, call: GoldCall, request: str) -> AgentAction | None:
        """`call` with every string argument the request does not state (what the skipped lookup would have
        found: the row id) replaced by a wrong one of the same shape; None if the request states them all."""
        args = dict(call.arguments)
        unseen = [k for k, v in args.items() if isinstance(v, str) and v not in request]
        if not unseen:
            return None
        for k in unseen:
            args[k] = _wrong_id(args[k], self.rng)
        self.pending, self.pending_ok, self.guessing = call, False, True
        self.mistakes.append("guessed")
        return AgentAction(calls=[(call.name, dumps(args))])

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AgentAction | None:
        last = messages[-1]
        if not self.asked:
            self.asked = True
            return AgentAction(text="Sure. What is the id?")
        if self.guess is not None:  # the first action after the request (asked for, if it was vague)
            call, self.guess = self.guess, None
            guessed = self._guessed(call, str(last.get("content") or ""))
            if guessed is not None:
                return guessed
        if last["role"] == "tool" and self.pending is not None:
            result = json.loads(last["content"])
            if is_transient_glitch(result):
                if self.rng.random() < self.cfg.give_up_rate:
                    self.mistakes.append("gave_up")
                    return AgentAction(text="Sorry, the system is busy. Please try again later.")
                return AgentAction(calls=[last_call(messages)])  # retry the very same call
            if self.guessing:
                # The guessed id does not exist (or, rarely, hit another row: the judge sees the wrong write).
                # Either way the demonstrator now does what it skipped: the full plan from its lookup.
                self.pending, self.guessing = None, False
                if isinstance(result, dict) and "error" in result:
                    self.mistakes.append("recovered")
                else:
                    self.mistakes.append("silent_error")
                return self._call(self.plan[0])
            if isinstance(result, dict) and "error" in result:
                if not self.pending_ok and self.rng.random() < self.cfg.recover_rate:
                    return self._fixed()
                return AgentAction(text="Sorry, I could not do that.")
            if not self.pending_ok:  # a wrong write went through: the agent does not notice
                self.mistakes.append("silent_error")
            self.step += 1
            self.pending = None
        if self.step < len(self.plan):
            if self.step > 0 and self.rng.random() < self.cfg.error_rate / 4:
                self.mistakes.append("stopped_early")
                return AgentAction(text="Done.")
            return self._call(self.plan[self.step])
        answer = self.task.answer
        if self.task.required_outputs and self.rng.random() < self.cfg.error_rate / 2:
            self.mistakes.append("vague_answer")
            answer = "Done."
        return AgentAction(text=answer)

    def _fixed(self) -> AgentAction:
        """Re-issue the pending call with the correct arguments (a recovered mistake)."""
        assert self.pending is not None
        self.pending_ok = True
        self.mistakes.append("recovered")
        return AgentAction(calls=[(self.pending.name, dumps(self.pending.arguments))])


def lookup_tools(task: TaskSpec) -> set[str]:
    """Names of the task's read-only tools (tool_world `get`/`list` ops): the lookups a shortcut or a guess skips."""
    return {t.name for t in task.tools if t.op.kind in ("get", "list")}


def last_call(messages: list[dict[str, Any]]) -> tuple[str, str]:
    for m in reversed(messages):
        if m["role"] == "assistant" and m.get("tool_calls"):
            fn = m["tool_calls"][-1]["function"]
            return fn["name"], fn["arguments"]
    raise ValueError("no earlier tool call to retry")


@dataclass
class Episode:
    task: TaskSpec
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    session: WorldSession
    reward: float
    details: dict[str, Any]
    final_answer: str | None
    invalid_response: bool = False
    mistakes: list[str] = field(default_factory=list)

    @property
    def turns(self) -> int:
        return sum(m["role"] == "assistant" for m in self.messages)


def run_episode(task: TaskSpec, policy: Policy, seed: int, user: UserSimulator | None = None) -> Episode:
    """Play one task to the end (final answer, step limit, or an unusable policy response)."""
    rng = random.Random(f"{seed}:{task.id}:agent")
    session = WorldSession(task, seed=seed, user=user)
    messages = session.initial_messages()
    tools = session.openai_tools()
    policy.start(task, rng)
    answer, invalid, idx = None, False, 0
    for _ in range(task.max_steps):
        action = policy.act(messages, tools)
        if action is None:
            invalid = True
            break
        if action.calls:
            calls = []
            for name, args in action.calls:
                calls.append(
                    {
                        "id": f"functions.{name}:{idx}",
                        "type": "function",
                        "function": {"name": name, "arguments": args},
                    }
                )
                idx += 1
            messages.append({"role": "assistant", "content": action.text or "", "tool_calls": calls})
            for c in calls:
                r = session.call(c["function"]["name"], c["function"]["arguments"])
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": c["id"],
                        "name": c["function"]["name"],
                        "content": r.content,
                    }
                )
            continue
        text = action.text or ""
        messages.append({"role": "assistant", "content": text})
        reply = session.say(text)
        if reply is None:
            answer = text
            break
        messages.append({"role": "user", "content": reply})
    reward, details = session.finish(answer)
    mistakes = list(getattr(policy, "mistakes", []))
    return Episode(task, messages, tools, session, reward, details, answer, invalid, mistakes)
