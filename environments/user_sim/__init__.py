"""User simulator for multi-turn tasks: a persona that replies to the agent.

    user = make_user(persona, seed=3)            # LLM-backed if AGENTRL_USER_SIM_URL is set, else procedural
    first = user.start()                          # the opening user message
    turn = user.reply(agent_text)                 # UserTurn(text, done); done when the user says ###STOP###

A library for environments (tool_world's multi-turn tasks); it is not a server by itself.
"""

from __future__ import annotations

from typing import Protocol

from environments.user_sim.llm import LLMConfig, LLMUser, UserSimError
from environments.user_sim.persona import STOP, Persona, UserTurn
from environments.user_sim.procedural import ProceduralUser


class UserSimulator(Protocol):
    def start(self) -> str: ...

    def reply(self, agent_text: str) -> UserTurn: ...


def make_user(persona: Persona, seed: int = 0, llm: LLMConfig | None = None) -> UserSimulator:
    """An LLM user when `llm` (or AGENTRL_USER_SIM_URL) is configured, otherwise the procedural one."""
    llm = llm or LLMConfig.from_env()
    return LLMUser(persona, llm) if llm is not None else ProceduralUser(persona, seed=seed)


__all__ = [
    "STOP",
    "LLMConfig",
    "LLMUser",
    "Persona",
    "ProceduralUser",
    "UserSimError",
    "UserSimulator",
    "UserTurn",
    "make_user",
]
