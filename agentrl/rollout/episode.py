"""One episode's token-level state: the exact token sequence, loss mask, logprobs, and how to extend it.

Token-in/token-out (issue 6): the sequence only ever grows by appending
- tokens the engine generated (mask 1, with the engine's logprob), exactly as the engine returned them, and
- the tokenization of the *new* messages only (tool results, user replies) rendered with `render_message` plus
  the generation prompt (mask 0, logprob None).
History is never re-rendered or re-tokenized, so the prompt of turn t+1 is turn t's prompt + its generated tokens
+ the appended observation, and the trainer scores exactly `token_ids`.

Partial rollouts (Kimi k1.5 §2.6.2, used by K2): an episode stopped by the per-iteration budget keeps its state in
the Trajectory (`metadata["loop"]`) and continues from the same tokens next iteration, even mid-turn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agentrl.engine.base import SamplingSpec
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus
from model.chat_format import GENERATION_PROMPT, render_message


@dataclass
class EpisodeSpec:
    """One episode to run. `sampling.max_tokens` is the per-sample budget of generated tokens (all turns)."""

    task: str | dict[str, Any] | None
    env: Any  # EnvLike
    sampling: SamplingSpec
    policy_version: int = 0
    task_id: str = ""
    job_id: str | None = None
    group_id: str | None = None
    task_type: str = "tool_use"
    env_name: str = ""
    env_seed: int | None = None
    segment_tokens: int | None = None  # partial rollouts: generated-token budget for this iteration
    resume_from: Trajectory | None = None
    trajectory_id: str | None = None


@dataclass
class Episode:
    spec: EpisodeSpec
    id: str
    token_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: list[float | None] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt_len: int = 0
    session_id: str = ""
    turn_start: int = -1  # index where the current (unfinished) assistant turn's tokens begin; -1: none
    num_turns: int = 0
    num_tool_calls: int = 0
    num_invalid_tool_calls: int = 0
    generated: int = 0  # over the whole episode (per-sample budget)
    segment_generated: int = 0  # this iteration (partial-rollout budget)
    calls: int = 0  # engine calls, for seeds
    status: TrajectoryStatus | None = None  # set when the episode stops
    failure_reason: str | None = None
    env_reward: float | None = None
    env_info: dict[str, Any] = field(default_factory=dict)
    policy_versions: list[int] = field(default_factory=list)
    version_spans: list[list[int]] = field(default_factory=list)  # [start, end, version] of generated tokens
    pending_errors: list[str] = field(
        default_factory=list
    )  # malformed calls reported with the next env result
    env_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    prior_wall_s: float = 0.0

    @property
    def done(self) -> bool:
        return self.status is not None

    def append_prompt(self, token_ids: list[int]) -> None:
        self.token_ids += token_ids
        self.loss_mask += [0] * len(token_ids)
        self.logprobs += [None] * len(token_ids)

    def append_generated(self, token_ids: list[int], logprobs: list[float], version: int) -> None:
        if len(token_ids) != len(logprobs):
            raise ValueError(f"engine returned {len(token_ids)} tokens but {len(logprobs)} logprobs")
        if not token_ids:
            return
        start = len(self.token_ids)
        self.token_ids += token_ids
        self.loss_mask += [1] * len(token_ids)
        self.logprobs += list(logprobs)
        self.generated += len(token_ids)
        self.segment_generated += len(token_ids)
        if self.version_spans and self.version_spans[-1][2] == version and self.version_spans[-1][1] == start:
            self.version_spans[-1][1] = start + len(token_ids)
        else:
            self.version_spans.append([start, start + len(token_ids), version])
        if version not in self.policy_versions:
            self.policy_versions.append(version)

    def append_messages(
        self, tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool
    ) -> None:
        """Render only the new messages and tokenize that suffix (never the history)."""
        text = "".join(render_message(m) for m in messages) + (GENERATION_PROMPT if generation_prompt else "")
        self.messages += messages
        if text:
            self.append_prompt(tokenizer(text, add_special_tokens=False)["input_ids"])

    def next_sampling(self, max_turn_tokens: int, max_context: int) -> tuple[SamplingSpec, str | None]:
        """Sampling for the next engine call, or the status to stop with when no budget is left."""
        s = self.spec.sampling
        left_sample = s.max_tokens - self.generated
        left_context = max_context - len(self.token_ids)
        if left_sample <= 0 or left_context <= 0:
            return s, TrajectoryStatus.truncated.value
        left_segment = None
        if self.spec.segment_tokens is not None:
            left_segment = self.spec.segment_tokens - self.segment_generated
            if left_segment <= 0:
                return s, TrajectoryStatus.partial.value
        n = min(max_turn_tokens, left_sample, left_context)
        if left_segment is not None:
            n = min(n, left_segment)
        seed = None if s.seed is None else s.seed + 7919 * self.calls
        spec = SamplingSpec(
            temperature=s.temperature, max_tokens=n, top_p=s.top_p, seed=seed, stop_token_ids=s.stop_token_ids
        )
        return spec, None

    def to_trajectory(self) -> Trajectory:
        s = self.spec
        loop_state = {
            "session_id": self.session_id,
            "turn_start": self.turn_start,
            "generated": self.generated,
            "calls": self.calls,
            "version_spans": self.version_spans,
        }
        return Trajectory(
            id=self.id,
            job_id=s.job_id,
            task_id=s.task_id or (s.task if isinstance(s.task, str) else "") or "",
            task_type=s.task_type,
            group_id=s.group_id,
            env=s.env_name,
            token_ids=self.token_ids,
            loss_mask=self.loss_mask,
            logprobs=self.logprobs,
            prompt_len=self.prompt_len,
            messages=self.messages,
            num_turns=self.num_turns,
            num_tool_calls=self.num_tool_calls,
            num_invalid_tool_calls=self.num_invalid_tool_calls,
            status=self.status or TrajectoryStatus.partial,
            failure_reason=self.failure_reason,
            env_reward=self.env_reward,
            policy_versions=self.policy_versions,
            sampling={"temperature": s.sampling.temperature, "max_tokens": s.sampling.max_tokens},
            timing={"wall_s": self.prior_wall_s + time.perf_counter() - self.started, "env_s": self.env_s},
            metadata={"loop": loop_state, "env_info": self.env_info},
        )

    @classmethod
    def resume(cls, spec: EpisodeSpec) -> Episode:
        """Continue a partial trajectory from its exact tokens (the env session must still be open)."""
        t = spec.resume_from
        assert t is not None
        if t.status != TrajectoryStatus.partial:
            raise ValueError(f"trajectory {t.id} has status {t.status.value}; only partial ones resume")
        loop = t.metadata.get("loop") or {}
        if not loop.get("session_id"):
            raise ValueError(f"trajectory {t.id} has no env session to resume (metadata.loop.session_id)")
        return cls(
            spec=spec,
            id=t.id,
            token_ids=list(t.token_ids),
            loss_mask=list(t.loss_mask),
            logprobs=list(t.logprobs),
            messages=list(t.messages),
            prompt_len=t.prompt_len,
            session_id=loop["session_id"],
            turn_start=int(loop.get("turn_start", -1)),
            num_turns=t.num_turns,
            num_tool_calls=t.num_tool_calls,
            num_invalid_tool_calls=t.num_invalid_tool_calls,
            generated=int(loop.get("generated", t.num_generated)),
            calls=int(loop.get("calls", 0)),
            policy_versions=list(t.policy_versions),
            version_spans=[list(v) for v in loop.get("version_spans", [])],
            env_s=float(t.timing.get("env_s", 0.0)),
            prior_wall_s=float(t.timing.get("wall_s", 0.0)),
        )
