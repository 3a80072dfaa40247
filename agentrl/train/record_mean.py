"""SFT loss aggregated per record (`SFTStageConfig.loss_agg: record_mean`): each record's mean token loss, then the
mean over the batch's records, instead of TRL's mean over every supervised token of the batch (`token_mean`).

Why: a critic record (K2 §3.2.2, the critic ability initialised in SFT) supervises one verdict (`[[A]]`, ~4 tokens)
while a transcript supervises ~100. Under `token_mean` a batch with 30% critic records gives the verdict letter
~0.4% of the loss, and 200 mixed steps left the critic where it started (0.41 -> 0.43 swap-debiased on on-policy
pairs, BENCHMARKS.md "Eleventh session"). Per record, every record weighs the same whatever its length. This is
verl's `seq-mean-token-mean` loss aggregation mode.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import SFTTrainer


def _token_nll(
    logits_BTV: torch.Tensor, labels_BT: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(next-token log-probs (B, T-1, V), NLL per position (zero where unsupervised), supervised mask)."""
    target_BT = labels_BT[:, 1:]
    mask_BT = target_BT != -100
    logp_BTV = torch.log_softmax(logits_BTV[:, :-1].float(), dim=-1)
    nll_BT = -logp_BTV.gather(-1, target_BT.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask_BT
    return logp_BTV, nll_BT, mask_BT


def _record_mean(nll_BT: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
    counts_B = mask_BT.sum(dim=1)
    supervised_B = counts_B > 0
    if not supervised_B.any():
        return nll_BT.sum() * 0.0  # a batch without supervised tokens: a finite zero, still in the graph
    return (nll_BT.sum(dim=1)[supervised_B] / counts_B[supervised_B]).mean()


def record_mean_nll(logits_BTV: torch.Tensor, labels_BT: torch.Tensor) -> torch.Tensor:
    """Mean over records (with at least one supervised token) of each record's mean next-token NLL. `labels_BT`
    are unshifted (HF convention; -100 = not supervised)."""
    _, nll_BT, mask_BT = _token_nll(logits_BTV, labels_BT)
    return _record_mean(nll_BT, mask_BT)


class RecordMeanSFTTrainer(SFTTrainer):
    """`SFTTrainer` whose loss is `record_mean_nll`; logs the same `entropy` and `mean_token_accuracy` as TRL."""

    # our loss is a mean per micro-batch: Trainer must divide it by the gradient-accumulation steps itself
    loss_is_scaled_for_ga = False

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        labels_BT = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
        logp_BTV, nll_BT, mask_BT = _token_nll(outputs.logits, labels_BT)
        loss = _record_mean(nll_BT, mask_BT)
        with torch.no_grad():
            valid = mask_BT.sum().clamp(min=1)
            entropy_BT = -(logp_BTV.exp() * logp_BTV).sum(-1)
            correct_BT = (logp_BTV.argmax(-1) == labels_BT[:, 1:]) & mask_BT
            mode = "train" if model.training else "eval"
            self._metrics[mode]["entropy"].append(((entropy_BT * mask_BT).sum() / valid).item())
            self._metrics[mode]["mean_token_accuracy"].append((correct_BT.sum() / valid).item())
        return (loss, outputs) if return_outputs else loss
