"""`HFEngine`: transformers `generate` as an inference engine, i.e. TRL's rollout path without vLLM.

TRL's `GRPOTrainer` without vLLM left-pads a batch of prompt ids and calls `model.generate` once; its tool loop
(`_tool_call_loop`) then runs the tools and calls `generate` again, in one batch, for the completions that made a
call. Each call runs until every row has stopped or the longest budget is spent. Under the agent loop this engine
does the same thing through `BatchStepper`: one `generate` per round of ready episodes. It is the peer path of
`agentrl bench rollout` (issue 6), and an engine that works wherever transformers does, for example without vLLM.

Per-request sampling, within what one `generate` call allows:
- Requests are grouped by temperature, top_p, stop ids, `ignore_eos` and allowed ids; each group is one call
  (chunked by `max_batch`).
- A group's call runs to the longest `max_tokens` in it, and each output is cut to its own budget. The extra
  tokens of shorter rows are computed and thrown away, which is what a TRL batch does too.
- Seeds: one `torch.manual_seed` per call, from the first seeded request in it. Sampling is reproducible for the
  same batch, but unlike vLLM a request's tokens depend on its batch.
- `ignore_eos` disables every stop, as `min_new_tokens = max_new_tokens` does.

Logprobs follow `VLLMEngine`'s rule (the log-softmax of the logits after temperature scaling, i.e. of the
distribution the token was sampled from). In greedy mode they are the log-softmax of the raw logits.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from agentrl.engine.base import EngineError, Generation, SamplingSpec, per_prompt_specs


class HFEngine:
    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 64) -> None:
        if tokenizer.pad_token_id is None:
            raise EngineError("HFEngine needs a tokenizer with a pad token (left padding)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch = max_batch

    @classmethod
    def from_checkpoint(cls, path: str, *, dtype: Any = None, max_batch: int = 64) -> HFEngine:
        import torch

        from model.checkpoint import load_checkpoint

        model, tokenizer = load_checkpoint(path, dtype=dtype or torch.float32)
        return cls(model, tokenizer, max_batch=max_batch)

    def generate(
        self, prompts: list[list[int]], sampling: list[SamplingSpec] | SamplingSpec
    ) -> list[Generation]:
        specs = per_prompt_specs(prompts, sampling)
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(specs):
            key = (s.temperature, s.top_p, s.stop_token_ids, s.ignore_eos, s.allowed_token_ids)
            groups.setdefault(key, []).append(i)
        out: list[Generation | None] = [None] * len(prompts)
        for rows in groups.values():
            for start in range(0, len(rows), self.max_batch):
                chunk = rows[start : start + self.max_batch]
                gens = self._generate_batch([prompts[i] for i in chunk], [specs[i] for i in chunk])
                for i, gen in zip(chunk, gens, strict=True):
                    out[i] = gen
        return [g for g in out if g is not None]

    def _generate_batch(self, prompts: list[list[int]], specs: list[SamplingSpec]) -> list[Generation]:
        import torch

        first = specs[0]
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)  # [batch, width], left-padded
        mask = torch.zeros_like(ids)
        for row, p in enumerate(prompts):
            ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[row, width - len(p) :] = 1
        max_new = max(s.max_tokens for s in specs)
        stop_ids = [] if first.ignore_eos else list(first.stop_token_ids or [self.tokenizer.eos_token_id])
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "pad_token_id": pad,
            "eos_token_id": stop_ids or None,
            "min_new_tokens": max_new if first.ignore_eos else 0,
            "output_scores": True,
            "return_dict_in_generate": True,
        }
        if first.temperature > 0:
            kwargs.update(do_sample=True, temperature=first.temperature, top_p=first.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if first.allowed_token_ids:
            kwargs["logits_processor"] = [_AllowOnly(first.allowed_token_ids)]
        seeds = [s.seed for s in specs if s.seed is not None]
        if seeds:
            torch.manual_seed(seeds[0])
        device = next(self.model.parameters()).device
        with torch.no_grad():
            result = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        new_ids = result.sequences[:, width:].cpu()  # [batch, steps]
        logprobs = torch.stack(result.scores, dim=1).float().log_softmax(-1).cpu()  # [batch, steps, vocab]
        return [
            _row_generation(new_ids[row], logprobs[row], spec, stop_ids) for row, spec in enumerate(specs)
        ]

    def load_weights(self, named_tensors: Iterable[tuple[str, Any]]) -> dict[str, float]:
        """Copy trainer weights (checkpoint names, `model.weights.checkpoint_named_tensors`) into the model in place."""
        from model.weights import copy_checkpoint_named_tensors

        start = time.perf_counter()
        try:
            nbytes = copy_checkpoint_named_tensors(self.model, named_tensors)
        except KeyError as exc:
            raise EngineError(f"HFEngine.load_weights: {exc.args[0]}") from exc
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "bytes": float(nbytes), "bytes_per_s": nbytes / max(seconds, 1e-9)}


class _AllowOnly:
    """A logits processor that keeps only the allowed ids (vLLM's `allowed_token_ids`)."""

    def __init__(self, allowed: tuple[int, ...]) -> None:
        self.allowed = list(allowed)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        keep = torch.full_like(scores, float("-inf"))
        keep[:, self.allowed] = 0.0
        return scores + keep


def _row_generation(token_ids: Any, logprobs: Any, spec: SamplingSpec, stop_ids: list[int]) -> Generation:
    """One row of a batch: cut to the request's own budget and after its first stop token."""
    tokens = token_ids.tolist()[: spec.max_tokens]
    finish = "length"
    for pos, tok in enumerate(tokens):
        if tok in stop_ids:
            tokens, finish = tokens[: pos + 1], "stop"
            break
    steps = range(len(tokens))
    extra: dict[str, Any] = {}
    if spec.candidate_token_ids:
        extra["candidate_logprobs"] = [
            {c: float(logprobs[i, c]) for c in spec.candidate_token_ids} for i in steps
        ]
    return Generation(
        token_ids=tokens,
        logprobs=[float(logprobs[i, tok]) for i, tok in zip(steps, tokens, strict=True)],
        finish_reason=finish,
        extra=extra,
    )
