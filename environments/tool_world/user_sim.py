"""The procedural user simulator: a persona that answers the agent's clarifying question.

K2 §3.1 simulates users with LLM personas "with distinct communication styles and preferences". Offline we keep
the part that matters for verifiable multi-turn tasks: a user who first leaves out a detail (`task.vague`) and
supplies it (`task.reveal`, already worded in the persona's style at task creation) once the agent replies
without acting. Any other agent text is taken as the final answer (the simulator returns None). An LLM-backed
user plugs in through the same `UserSimulator` signature (see `agentrl.synth.roles`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from environments.tool_world.session import WorldSession
    from environments.tool_world.spec import TaskSpec

PERSONAS: dict[str, dict[str, Any]] = {
    # request wrapper and reveal wording per persona; "{t}" is the request, "{x}" the withheld detail
    "plain": {"ask": "{t}", "reveal": "It is {x}."},
    "terse": {"ask": "{t}", "reveal": "{x}"},
    "polite": {"ask": "Hi! {t} Thanks.", "reveal": "Sure, it is {x}. Thanks!"},
}


class UserSimulator(Protocol):
    def __call__(self, task: TaskSpec, session: WorldSession, agent_text: str) -> str | None: ...


def procedural_user(task: TaskSpec, session: WorldSession, agent_text: str) -> str | None:
    """Reveal the withheld detail once; otherwise the agent's text ends the episode."""
    if task.reveal is not None and not session.revealed:
        return task.reveal
    return None


def request_text(persona: str, text: str) -> str:
    """The user's request in the persona's style (terse users drop 'Please')."""
    if persona == "terse" and text.startswith("Please "):
        text = text[7].upper() + text[8:]
    return PERSONAS.get(persona, PERSONAS["plain"])["ask"].format(t=text)


def reveal_text(persona: str, detail: str) -> str:
    return PERSONAS.get(persona, PERSONAS["plain"])["reveal"].format(x=detail)
