"""In-place weight sync into a live vLLM model, with the fix for vLLM's prepacked MoE kernels.

vLLM's in-place reload (`reload_weights`, vllm/model_executor/model_loader/reload/) restores each layer's
checkpoint-shaped parameters, loads the new tensors, reruns `process_weights_after_loading` and copies the result
back into the original (kernel-format) storage, so MLA's absorbed `W_UK_T`/`W_UV` and fused projections stay
consistent.

The bug it has (vLLM 0.32, CPU): `UnquantizedFusedMoEMethod._setup_kernel` treats every call after the first as
an "RL weight update" and skips `moe_kernel.fused_experts.process_weights_after_loading(layer)`. On CPU that call
is where the routed experts' `w13_weight`/`w2_weight` are padded and *prepacked* into the grouped-gemm layout
(`cpu_prepack_moe_weight`). So a reload copies plain row-major expert weights into storage the kernel reads as
prepacked tiles: the MoE output is silently wrong (same shape, no error; the logprob gap to a transformers forward
grows ~10x even when the "new" weights equal the old ones).

Fix (no vLLM file is changed): for the duration of the reload, each MoE layer whose kernel prepacks its weights
gets `moe_kernel = None`, so `_setup_kernel` takes its first-load path and re-runs the prepack on the freshly loaded
weights; the reload machinery then copies the prepacked result into the original storage. Afterwards the original
kernel object (and its quant config) is put back, so every reference it holds (biases, routing tables) still points
at the live tensors. On backends whose experts do not override `process_weights_after_loading` (CUDA Triton) the
update path is already correct and nothing is touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def _prepacking_moe_methods(model: Any) -> list[Any]:
    """The quant methods of MoE layers whose experts repack weights in `process_weights_after_loading`."""
    from vllm.model_executor.layers.fused_moe import modular_kernel as mk
    from vllm.model_executor.layers.fused_moe.unquantized_fused_moe_method import UnquantizedFusedMoEMethod

    base = mk.FusedMoEExperts.process_weights_after_loading
    methods = []
    for module in model.modules():
        method = getattr(module, "quant_method", None)
        if not isinstance(method, UnquantizedFusedMoEMethod) or method.moe_kernel is None:
            continue
        experts = method.moe_kernel.fused_experts
        if type(experts).process_weights_after_loading is not base:
            methods.append(method)
    return methods


def reload_weights_in_worker(worker: Any, weights: list[tuple[str, Any]]) -> int:
    """Run inside the vLLM worker (via `collective_rpc`): reload `weights` (checkpoint names) in place.

    Returns the number of MoE layers whose kernel prepack was re-run.
    """
    model = worker.model_runner.get_model()
    methods = _prepacking_moe_methods(model)
    saved = [(m, m.moe_kernel, m.moe_quant_config) for m in methods]
    for method in methods:
        # First-load path in `_setup_kernel`: re-run the experts' prepack on the new weights.
        method.moe_kernel = None
    try:
        worker.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    finally:
        for method, kernel, quant_config in saved:
            method.moe_kernel = kernel
            method.moe_quant_config = quant_config
    return len(methods)


def tensor_bytes(named_tensors: Iterable[tuple[str, Any]]) -> int:
    return sum(t.numel() * t.element_size() for _, t in named_tensors)
