"""`BatchStepper`: the `StepEngine` interface over an engine that only has a whole-batch `generate`.

Every `step` generates all requests submitted since the last one in one call and returns them all finished, which
is the per-turn batching the agent loop did before continuous batching: any engine with only `generate` (a test
engine, a custom backend) works unchanged, only without requests joining mid-generation.
"""

from __future__ import annotations

from agentrl.engine.base import Generation, InferenceEngine, SamplingSpec, StepEngine


class BatchStepper:
    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine
        self._queued: list[tuple[str, list[int], SamplingSpec]] = []

    def submit(self, request_id: str, prompt: list[int], sampling: SamplingSpec) -> None:
        self._queued.append((request_id, prompt, sampling))

    def step(self) -> list[tuple[str, Generation]]:
        queued, self._queued = self._queued, []
        if not queued:
            return []
        gens = self.engine.generate([p for _, p, _ in queued], [s for _, _, s in queued])
        if len(gens) != len(queued):
            raise ValueError(f"engine returned {len(gens)} generations for {len(queued)} prompts")
        return [(rid, gen) for (rid, _, _), gen in zip(queued, gens, strict=True)]

    def num_unfinished(self) -> int:
        return len(self._queued)


def as_step_engine(engine: InferenceEngine | StepEngine) -> StepEngine:
    """The engine itself when it batches continuously, else a `BatchStepper` over its `generate`."""
    return engine if isinstance(engine, StepEngine) else BatchStepper(engine)
