"""`WeightSync` implementations. The vLLM engine's sync lives with the engine (`InferenceEngine.load_weights`).

`EngineSync` streams the trainer's weights into an engine under their checkpoint names, and `ModuleSync` copies
them into another in-process torch module (an HF-generate sampler or an evaluation replica). The loop times
whichever it is given (`time/weight_sync_s`).
"""

from __future__ import annotations

from typing import Any

import torch


class ModuleSync:
    def __init__(self, target: torch.nn.Module) -> None:
        self.target = target
        self.version = 0

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, version: int) -> None:
        self.target.load_state_dict(model.state_dict())
        self.version = version


class EngineSync:
    """Push weights to an `InferenceEngine` (e.g. agentrl.engine.vllm_engine.VLLMEngine) after every update."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.version = 0

    @torch.no_grad()
    def __call__(self, model: torch.nn.Module, version: int) -> None:
        from model.weights import checkpoint_named_tensors

        self.engine.load_weights(checkpoint_named_tensors(model))
        self.version = version
