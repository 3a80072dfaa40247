"""Who the simulated user is and what they want (tau-bench-style user scenario)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STOP = "###STOP###"


class Persona(BaseModel):
    """A user scenario: the goal, facts the user can share when asked, and a speaking style."""

    model_config = ConfigDict(extra="forbid")

    name: str = "Alex"
    style: str = Field(default="polite", description="polite | terse | chatty")
    goal: str = Field(min_length=1, description="Why the user is here, said in the first message.")
    known_info: dict[str, str] = Field(default_factory=dict, description="Facts given when the agent asks.")
    instructions: str = Field(default="", description="Extra behaviour for an LLM-backed user.")
    confirm: bool = Field(
        default=True, description="Whether the user agrees when asked to confirm an action."
    )
    max_turns: int = Field(default=10, ge=1, le=100)


class UserTurn(BaseModel):
    text: str
    done: bool = False
