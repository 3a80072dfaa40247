"""An LLM-backed user through any OpenAI-compatible chat endpoint (vLLM, the policy server, a hosted API).

Roles are flipped as in tau-bench: the agent's messages are `user` turns for the simulator model and its
own replies are `assistant` turns. The conversation ends when the model says ###STOP###. Every request
has a timeout; failures raise UserSimError with the endpoint and the reason.
"""

from __future__ import annotations

import os

import httpx
from pydantic import BaseModel, ConfigDict, Field

from environments.user_sim.persona import STOP, Persona, UserTurn


class UserSimError(RuntimeError):
    """The simulator endpoint failed (network, HTTP status, malformed reply)."""


class LLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    model: str
    api_key: str | None = None
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=256, ge=1, le=8192)
    timeout_s: float = Field(default=30.0, gt=0)

    @classmethod
    def from_env(cls) -> LLMConfig | None:
        """From AGENTRL_USER_SIM_URL / _MODEL / _API_KEY; None when no URL is set (use the procedural user)."""
        url = os.environ.get("AGENTRL_USER_SIM_URL")
        if not url:
            return None
        return cls(
            base_url=url,
            model=os.environ.get("AGENTRL_USER_SIM_MODEL", "default"),
            api_key=os.environ.get("AGENTRL_USER_SIM_API_KEY"),
        )


def system_prompt(p: Persona) -> str:
    facts = "\n".join(f"- {k}: {v}" for k, v in p.known_info.items()) or "- (none)"
    return (
        f"You are {p.name}, a customer talking to a support agent. Style: {p.style}.\n"
        f"Your goal: {p.goal}\nFacts you may share only when asked:\n{facts}\n{p.instructions}\n"
        f"Write one short message at a time, as the customer. Never reveal that you are simulated. "
        f"When your goal is met or cannot be met, end your message with {STOP}."
    )


class LLMUser:
    def __init__(self, persona: Persona, config: LLMConfig, http: httpx.Client | None = None) -> None:
        self.persona = persona
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.http = http or httpx.Client(headers=headers, timeout=config.timeout_s)
        self.history: list[dict[str, str]] = [{"role": "system", "content": system_prompt(persona)}]
        self.turns = 0
        self.done = False

    def _complete(self) -> str:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        body = {
            "model": self.config.model,
            "messages": self.history,
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        try:
            resp = self.http.post(url, json=body, timeout=self.config.timeout_s)
        except httpx.HTTPError as exc:
            raise UserSimError(f"user simulator at {url} failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code != 200:
            raise UserSimError(f"user simulator at {url} answered HTTP {resp.status_code}: {resp.text[:300]}")
        try:
            return str(resp.json()["choices"][0]["message"]["content"] or "").strip()
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UserSimError(f"user simulator at {url} sent a malformed reply: {resp.text[:300]}") from exc

    def start(self) -> str:
        self.history.append({"role": "user", "content": "Hi! How can I help you today?"})
        text = self._complete()
        self.history.append({"role": "assistant", "content": text})
        self.turns = 1
        return text

    def reply(self, agent_text: str) -> UserTurn:
        if self.done:
            return UserTurn(text=STOP, done=True)
        self.history.append({"role": "user", "content": agent_text})
        text = self._complete()
        self.history.append({"role": "assistant", "content": text})
        self.turns += 1
        self.done = STOP in text or self.turns >= self.persona.max_turns
        return UserTurn(text=text, done=self.done)
