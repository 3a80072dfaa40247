"""MuonClip inside transformers' Trainer (the base of TRL's SFTTrainer): `optimizers=(optimizer, scheduler)`."""

import pytest
import torch

from agentrl.optim import MuonClipConfig, build_muonclip
from tests.optim.helpers import batch, tiny_model


class _Rows(torch.utils.data.Dataset):
    def __init__(self, ids: torch.Tensor) -> None:
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


@pytest.mark.slow
def test_hf_trainer_steps_muonclip_with_grad_accumulation(tmp_path):
    from transformers import Trainer, TrainingArguments, get_constant_schedule

    model = tiny_model(seed=0)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_muonclip(model, MuonClipConfig(lr=0.01, qk_clip_tau=0.05))
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_Rows(batch(seed=1, rows=8, seq=16)),
        optimizers=(optimizer, get_constant_schedule(optimizer)),
    )
    trainer.train()
    stats = optimizer.last_stats
    assert stats["qk_clip/heads_clipped"] > 0 and stats["qk_clip/max_logit"] > 0.05  # forwards were tracked
    assert len(stats["balance/dead_experts"]) == 3
    assert all(not torch.equal(p, start[n]) for n, p in model.named_parameters()), "a parameter did not train"
