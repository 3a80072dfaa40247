"""An offline, seeded, rule-based user: answers questions from its known facts, confirms or declines
actions, restates its goal, and ends the conversation when the agent wraps up.

This stands in for K2's LLM user simulator (§3.1) where no model endpoint is configured, so multi-turn
envs stay testable and deterministic.
"""

from __future__ import annotations

import random
import re

from environments.user_sim.persona import STOP, Persona, UserTurn

_CONFIRM = re.compile(
    r"\b(confirm|proceed|shall i|should i|go ahead|is that (ok|okay|correct|right)|yes or no)\b", re.I
)
_WRAP_UP = re.compile(
    r"\b(anything else|is there anything|all set|have a (great|nice) day|resolved|completed)\b", re.I
)
_OPENERS = {
    "polite": ["Hi! {goal}", "Hello, I hope you can help. {goal}"],
    "terse": ["{goal}", "Need help: {goal}"],
    "chatty": ["Hey there! So, long story short: {goal}", "Hi hi! Okay, here's the thing. {goal}"],
}
_NUDGES = {
    "polite": ["Could you help me with that, please?", "Sorry, to be clear: {goal}"],
    "terse": ["{goal}", "Please just do it."],
    "chatty": ["Hmm, I'm not sure I follow. Basically: {goal}", "Right, so can we sort this out? {goal}"],
}


def _words(key: str) -> list[str]:
    return [w for w in re.split(r"[\s_\-]+", key.lower()) if len(w) > 2]


class ProceduralUser:
    """`start()` gives the opening message; `reply(agent_text)` the next user turn."""

    def __init__(self, persona: Persona, seed: int = 0) -> None:
        self.persona = persona
        self.rng = random.Random(seed)
        self.turns = 0
        self.shared: set[str] = set()
        self.done = False

    def _style(self, table: dict[str, list[str]]) -> str:
        options = table.get(self.persona.style, table["polite"])
        return self.rng.choice(options).format(goal=self.persona.goal)

    def start(self) -> str:
        self.turns = 1
        return self._style(_OPENERS)

    def reply(self, agent_text: str) -> UserTurn:
        if self.done:
            return UserTurn(text=STOP, done=True)
        self.turns += 1
        text = agent_text.lower()
        asked = [k for k in self.persona.known_info if any(w in text for w in _words(k))]
        if asked:
            self.shared.update(asked)
            facts = "; ".join(f"my {k} is {self.persona.known_info[k]}" for k in asked)
            return self._turn(facts[0].upper() + facts[1:] + ".")
        if _CONFIRM.search(text):
            return self._turn(
                "Yes, please go ahead." if self.persona.confirm else "No, please don't do that."
            )
        if _WRAP_UP.search(text) or self.turns > self.persona.max_turns:
            self.done = True
            return UserTurn(text=f"No, that's all, thanks. {STOP}", done=True)
        return self._turn(self._style(_NUDGES))

    def _turn(self, text: str) -> UserTurn:
        if self.turns >= self.persona.max_turns:
            self.done = True
            return UserTurn(text=f"{text} {STOP}", done=True)
        return UserTurn(text=text)
