"""The InferenceEngine interface. Token-in/token-out: engines take token ids and return token ids, never text."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentrl.errors import AgentRLError


class EngineError(AgentRLError):
    """The inference engine failed or stopped answering; a rollout cannot continue without it."""


@dataclass(frozen=True)
class SamplingSpec:
    """Per-request sampling; temperature and max_tokens come from the trainer's schedules and budgets."""

    temperature: float = 1.0
    max_tokens: int = 128
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False  # benchmarks: generate exactly max_tokens
    allowed_token_ids: tuple[
        int, ...
    ] = ()  # forced choice (the self-critique verdict); () = whole vocabulary
    # Also report these tokens' logprobs at every generated position, in `Generation.extra["candidate_logprobs"]`
    # (the critic's A-vs-B margin). Engines that cannot leave the key out.
    candidate_token_ids: tuple[int, ...] = ()


@dataclass
class Generation:
    token_ids: list[int]
    logprobs: list[
        float
    ]  # sampling logprob of each generated token (see engine docs for the temperature rule)
    finish_reason: str  # "stop" (stop token) or "length" (hit max_tokens)
    extra: dict[str, Any] = field(default_factory=dict)


def per_prompt_specs(
    prompts: list[list[int]], sampling: list[SamplingSpec] | SamplingSpec
) -> list[SamplingSpec]:
    """One `SamplingSpec` per prompt: a single spec is shared by all; a list must match the prompts one to one."""
    specs = sampling if isinstance(sampling, list) else [sampling] * len(prompts)
    if len(specs) != len(prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(specs)} sampling specs")
    return specs


class InferenceEngine(Protocol):
    def generate(self, prompts: list[list[int]], sampling: list[SamplingSpec]) -> list[Generation]: ...

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> None: ...


@runtime_checkable
class StepEngine(Protocol):
    """Continuous batching, one engine step at a time: a request joins the running batch when it is submitted and
    leaves it when it finishes, so an episode that comes back from its environment never waits for the others'
    turns to end (the agent loop's throughput path; `VLLMEngine` implements it). Engines that only batch whole
    calls get it through `agentrl.engine.stepper.BatchStepper`."""

    def submit(self, request_id: str, prompt: list[int], sampling: SamplingSpec) -> None: ...

    def step(self) -> list[tuple[str, Generation]]:
        """Advance every running request by one scheduler step; return the requests that finished in it."""
        ...

    def num_unfinished(self) -> int: ...
