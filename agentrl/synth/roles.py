"""The OpenAI-compatible endpoint backend for the LLM roles (tool designer, task writer, user, agent, judge).

K2 §3.1 runs every role with LLMs; offline we default to procedural roles, and this module is the seam for a real
model served by vLLM (`vllm serve ...`) or any provider. Every role that returns data asks for JSON-schema
structured output (vLLM enforces it even for a tiny model), parses and validates the answer, and on anything
unusable counts an invalid response for that role and falls back or drops the item; it never crashes the run.
Retries, timeouts, token accounting and cost come from `agentrl.rewards.openai_client.ChatClient`; concurrency
is bounded by the pipeline's thread pool (`endpoint.max_concurrency`). The endpoint is probed once at start, so an
unreachable URL fails fast with an error that names it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from agentrl.errors import AgentRLError
from agentrl.rewards.openai_client import ChatClient, ChatError
from agentrl.synth.config import BackendConfig
from agentrl.synth.episodes import AgentAction, Episode
from agentrl.synth.judge import Verdict
from environments.tool_world.session import WorldSession, dumps
from environments.tool_world.spec import DomainSpec, TaskSpec


class EndpointError(AgentRLError):
    """The configured endpoint cannot be used at all (unreachable, not OpenAI-compatible)."""


def _schema(props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


USER_SCHEMA = _schema({"reply": {"type": "string"}})
WRITER_SCHEMA = _schema({"text": {"type": "string"}})
JUDGE_SCHEMA = _schema({"pass": {"type": "boolean"}, "reason": {"type": "string"}})


class EndpointRoles:
    """All endpoint-backed roles of one run, sharing one client (one place for usage and invalid counts)."""

    def __init__(self, cfg: BackendConfig, client: ChatClient | None = None) -> None:
        self.cfg = cfg
        self.client = client or ChatClient(cfg.endpoint)
        self.invalid: Counter = Counter()
        self.calls: Counter = Counter()
        self._lock = threading.Lock()

    def probe(self) -> None:
        """GET {base_url}/models once; raise EndpointError naming the URL if it cannot be reached."""
        url = self.cfg.endpoint.base_url.rstrip("/") + "/models"
        headers = (
            {"Authorization": f"Bearer {self.cfg.endpoint.api_key}"} if self.cfg.endpoint.api_key else {}
        )
        try:
            resp = httpx.get(url, headers=headers, timeout=self.cfg.probe_timeout_s)
        except httpx.HTTPError as exc:
            raise EndpointError(f"endpoint {url} is unreachable: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise EndpointError(f"endpoint {url} answered HTTP {resp.status_code}: {resp.text[:200]}")

    def _count(self, counter: Counter, role: str) -> None:
        with self._lock:
            counter[role] += 1

    def ask(self, role: str, messages: list[dict[str, Any]], schema: dict[str, Any]) -> dict[str, Any] | None:
        """One structured call; None (and an invalid count for `role`) on any failure."""
        self._count(self.calls, role)
        try:
            text = self.client.chat(messages, json_schema=schema).text
            data = json.loads(text)
        except (ChatError, json.JSONDecodeError):
            self._count(self.invalid, role)
            return None
        if (
            not isinstance(data, dict)
            or next(Draft202012Validator(schema).iter_errors(data), None) is not None
        ):
            self._count(self.invalid, role)
            return None
        return data

    def stats(self) -> dict[str, Any]:
        return {
            "calls": dict(self.calls),
            "invalid": dict(self.invalid),
            "usage": self.client.stats.as_dict(),
        }

    # -- roles ----------------------------------------------------------------------------------------------
    def user(self, task: TaskSpec, session: WorldSession, agent_text: str) -> str | None:
        """Whether to reply stays procedural (verifiable); the LLM words the reply in the persona's style."""
        if task.reveal is None or session.revealed:
            return None
        prompt = [
            {"role": "system", "content": f"You are a {task.persona} user. You asked: {task.vague!r}. "
             f"Your detail is: {task.reveal!r}. Reply to the assistant in one short sentence that gives the detail."},
            {"role": "user", "content": agent_text},
        ]  # fmt: skip
        data = self.ask("user", prompt, USER_SCHEMA)
        needed = re.findall(r"[A-Z0-9]{3,}", task.reveal)
        if data is None or not all(v in data["reply"] for v in needed):
            if data is not None:
                self._count(self.invalid, "user")
            return task.reveal
        return data["reply"]

    def rewrite_user(self, task: TaskSpec) -> TaskSpec:
        """Task writer: paraphrase the request; every value the plan copies must survive verbatim."""
        values = [str(v) for g in task.gold for v in g.arguments.values() if str(v) in task.user]
        prompt = [
            {
                "role": "user",
                "content": f"Rewrite this request in other words, keeping {values} exactly: {task.user}",
            }
        ]
        data = self.ask("task_writer", prompt, WRITER_SCHEMA)
        if data is None or not data["text"].strip() or not all(v in data["text"] for v in values):
            if data is not None:
                self._count(self.invalid, "task_writer")
            return task
        return task.model_copy(update={"user": data["text"].strip()})

    def design_domain(self, category: str, name: str) -> DomainSpec | None:
        """Tool designer: a domain (tables + tools with tool_world ops) for `category`, validated."""
        schema = DomainSpec.model_json_schema()
        prompt = [{"role": "user", "content": f"Design a small tool domain named {name!r} for the category "
                   f"{category!r}: one table with an id key, and 3-5 short-named tools with tool_world ops."}]  # fmt: skip
        self._count(self.calls, "tool_designer")
        try:
            data = json.loads(self.client.chat(prompt, json_schema=schema).text)
            return DomainSpec.model_validate(
                {**data, "name": name, "category": category, "source": "endpoint"}
            )
        except (ChatError, json.JSONDecodeError, ValidationError, TypeError):
            self._count(self.invalid, "tool_designer")
            return None

    def judge(self, ep: Episode, rubric: dict[str, Any], verdict: Verdict) -> Verdict:
        """An LLM verdict on top of the procedural one: it can veto a pass; a bad answer is an abstention."""
        transcript = "\n".join(
            f"{m['role']}: {m.get('content') or ''} {m.get('tool_calls') or ''}" for m in ep.messages
        )
        prompt = [
            {"role": "system", "content": "Judge whether the assistant met the rubric. Answer JSON."},
            {"role": "user", "content": f"Rubric: {dumps(rubric)}\n\nTrajectory:\n{transcript}"},
        ]
        data = self.ask("judge", prompt, JUDGE_SCHEMA)
        if data is None:
            return verdict
        scores = {**verdict.scores, "llm_pass": float(bool(data["pass"]))}
        reasons = verdict.reasons + ([f"llm: {data['reason']}"] if not data["pass"] else [])
        return Verdict(
            passed=verdict.passed and bool(data["pass"]),
            scores=scores,
            reasons=reasons,
            judge="procedural+endpoint",
        )


class EndpointAgent:
    """The agent role through the endpoint: one structured action per turn (a tool call or a reply)."""

    def __init__(self, roles: EndpointRoles) -> None:
        self.roles = roles

    def start(self, task: TaskSpec, rng: Any) -> None:
        self.task = task

    def act(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> AgentAction | None:
        names = [t["function"]["name"] for t in tools]
        schema = _schema({"tool": {"type": "string", "enum": ["", *names]}, "arguments": {"type": "object"},
                          "reply": {"type": "string"}})  # fmt: skip
        system = (f"{messages[0]['content']}\nTools: {dumps(tools)}\nAnswer with JSON: set `tool` and `arguments` to "
                  "call a tool, or `tool` to \"\" and `reply` to answer the user.")  # fmt: skip
        chat = [{"role": "system", "content": system}]
        for m in messages[1:]:  # plain roles, so any chat endpoint accepts the history
            if m["role"] == "tool":
                chat.append({"role": "user", "content": f"[result of {m['tool_call_id']}] {m['content']}"})
            elif m.get("tool_calls"):
                fn = m["tool_calls"][0]["function"]
                chat.append(
                    {
                        "role": "assistant",
                        "content": dumps(
                            {
                                "tool": fn["name"],
                                "arguments": json.loads(fn["arguments"] or "{}"),
                                "reply": "",
                            }
                        ),
                    }
                )
            else:
                chat.append({"role": m["role"], "content": m.get("content") or ""})
        data = self.roles.ask("agent", chat, schema)
        if data is None:
            return None
        if data["tool"]:
            return AgentAction(calls=[(data["tool"], dumps(data["arguments"]))])
        return AgentAction(text=data["reply"])
