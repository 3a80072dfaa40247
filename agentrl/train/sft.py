"""`agentrl sft`: supervised fine-tuning on synthetic tool-use trajectories with TRL's `SFTTrainer`.

- Records are OpenAI-format `messages` + `tools` (what `agentrl synth` writes). We tokenize them ourselves with the
  K2 chat template (`apply_chat_template(..., return_assistant_tokens_mask=True)`) from plain Python dicts: going
  through Arrow first would unify tool schemas across rows and inject `null` properties into tool declarations.
- Loss falls only on assistant tokens (content, tool calls and `<|im_end|>`); system, user and tool-result tokens
  are masked (`assistant_masks`, from the template's `{% generation %}` markers).
- The optimizer is MuonClip (K2 uses Muon for SFT too) with QK-Clip; `optimizer: adamw` is the baseline.
- Metrics go to TensorBoard and `metrics.jsonl`; checkpoints are HF format; `resume: true` continues from the last
  Trainer checkpoint in `out_dir`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentrl.errors import AgentRLError
from agentrl.optim.config import MuonClipConfig
from model.special_tokens import IM_END


class SFTStageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    data: str = "runs/synth/trajectories.jsonl"
    """JSONL of {messages, tools} records."""
    init: str = "runs/init"
    """Checkpoint to start from (HF format)."""
    out_dir: str = "runs/sft"
    """Where Trainer checkpoints, metrics and `final/` go."""
    epochs: float = Field(1.0, gt=0)
    """Passes over the data (ignored when max_steps > 0)."""
    max_steps: int = -1
    """Stop after this many optimizer steps (-1: use epochs)."""
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(3e-3, gt=0)
    """Peak learning rate (a tiny model from scratch tolerates a high one)."""
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    lr_scheduler: str = "cosine"
    max_length: int = Field(512, ge=16)
    """Records longer than this (in tokens) are dropped and counted, never silently truncated."""
    packing: bool = False
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (TRL's default is on). Off: a small model has memory to spare, and
    the recomputed forward costs ~20% of every step."""
    group_by_length: bool = False
    """Batch records of similar length together (Trainer's `group_by_length` sampler) so less of each batch is
    padding. 2.2x faster per step on the demo's turn windows, but those batches hold near-identical records
    (same template and turn): 300 steps ended at loss 1.24 instead of 0.96 and copied a third as many values, so
    the demo leaves it off (BENCHMARKS.md, "Eighth session")."""
    loss_on: Literal["assistant", "all"] = "assistant"
    """`assistant`: loss on the policy's own tokens only (K2, TRL's assistant_only_loss). `all`: every token, i.e.
    language modelling on the whole transcript (system, user and tool turns too), for models trained from scratch."""
    context: Literal["full", "turn_windows"] = "full"
    """`full`: each record as written. `turn_windows`: one short record per assistant turn, holding only the latest
    user message and what followed it (no system prompt, no tool declarations): a sequence-length warm-up that lets a
    from-scratch model learn to copy values into arguments sooner (agentrl/train/turn_windows.py)."""
    optimizer: Literal["muonclip", "adamw"] = "muonclip"
    muonclip: MuonClipConfig = MuonClipConfig()
    seed: int = 0
    save_steps: int = Field(500, ge=1)
    logging_steps: int = Field(10, ge=1)
    resume: bool = False
    max_records: int = Field(0, ge=0)
    """Use at most this many records (0: all)."""
    critic_data: str | None = None
    """JSONL of critic records mixed into this phase (a pairwise critic prompt with the verdict `[[A]]`/`[[B]]` as
    the assistant turn, `CriticExample.sft_record`): K2 initialises the critic ability in SFT. Their loss is on the
    verdict turn only, whatever `loss_on` says, and they are never cut into turn windows."""
    critic_records: int = Field(0, ge=0)
    """Use at most this many critic records (0: all)."""
    loss_agg: Literal["token_mean", "record_mean"] = "token_mean"
    """`token_mean`: TRL's loss, the mean over every supervised token of the batch. `record_mean`: each record's mean
    token loss, then the mean over records (agentrl/train/record_mean.py), so a critic record's one verdict weighs as
    much as a transcript's hundred tokens."""
    critic_max_length: int = Field(1024, ge=16)
    """Critic prompts carry two responses, so they get their own length limit (the policy's context)."""


def read_jsonl(path: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """Read records, failing with the file and line number of the first broken line."""
    path = Path(path)
    if not path.is_file():
        raise AgentRLError(f"SFT data not found: {path}")
    records = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise AgentRLError(f"{path}:{lineno}: broken JSONL line ({exc.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("messages"), list):
                raise AgentRLError(f"{path}:{lineno}: record must be an object with a 'messages' list")
            records.append(record)
            if limit and len(records) >= limit:
                break
    if not records:
        raise AgentRLError(f"{path}: no records")
    return records


def tokenize_records(
    records: list[dict[str, Any]], tokenizer: Any, max_length: int, loss_on: str = "assistant"
) -> tuple[dict[str, list[list[int]]], dict[str, int]]:
    """Chat-template each record into input_ids + assistant_masks (all ones for `loss_on="all"`); drop (and
    count) over-long ones."""
    columns: dict[str, list[list[int]]] = {"input_ids": [], "assistant_masks": []}
    stats = {
        "records": len(records),
        "dropped_too_long": 0,
        "dropped_no_assistant": 0,
        "tokens": 0,
        "loss_tokens": 0,
    }
    for record in records:
        enc = tokenizer.apply_chat_template(
            record["messages"],
            tools=record.get("tools") or None,
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
        ids, mask = list(enc["input_ids"]), list(enc["assistant_masks"])
        if len(ids) > max_length:
            stats["dropped_too_long"] += 1
            continue
        if not any(mask):
            stats["dropped_no_assistant"] += 1
            continue
        if loss_on == "all":
            mask = [1] * len(ids)
        columns["input_ids"].append(ids)
        columns["assistant_masks"].append(mask)
        stats["tokens"] += len(ids)
        stats["loss_tokens"] += sum(mask)
    if not columns["input_ids"]:
        raise AgentRLError(f"no usable SFT records: {stats}")
    return columns, stats


def build_columns(cfg: SFTStageConfig, tokenizer: Any) -> tuple[dict[str, list[list[int]]], dict[str, int]]:
    """The phase's training columns: `data` (cut into turn windows for `context=turn_windows`, masked per
    `loss_on`), then the `critic_data` records (loss on the verdict turn only). Stats of the critic records carry
    a `critic_` prefix."""
    records = read_jsonl(cfg.data, cfg.max_records)
    if cfg.context == "turn_windows":
        from agentrl.train.turn_windows import turn_windows

        records = list(turn_windows(records))
    columns, stats = tokenize_records(records, tokenizer, cfg.max_length, loss_on=cfg.loss_on)
    if cfg.critic_data:
        critic = read_jsonl(cfg.critic_data, cfg.critic_records)
        extra, extra_stats = tokenize_records(critic, tokenizer, cfg.critic_max_length, loss_on="assistant")
        for key in columns:
            columns[key].extend(extra[key])
        stats.update({f"critic_{k}": v for k, v in extra_stats.items()})
    return columns, stats


def _jsonl_callback(path: Path):
    from transformers import TrainerCallback

    class JsonlMetrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if logs:
                with path.open("a") as fh:
                    fh.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return JsonlMetrics()


def build_optimizer(model: Any, cfg: SFTStageConfig) -> Any:
    import torch

    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.1)
    from agentrl.optim.build import build_muonclip

    return build_muonclip(model, cfg.muonclip.model_copy(update={"lr": cfg.lr}))


def run_sft(cfg: SFTStageConfig, progress: bool = True) -> dict[str, Any]:
    """Train, save `out_dir/final` (HF format), and return summary metrics."""
    import time

    from datasets import Dataset
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    from model.checkpoint import load_checkpoint, save_checkpoint

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    last = get_last_checkpoint(str(out)) if cfg.resume else None
    # Trainer's own resume loads weights with a plain load_state_dict, which misses transformers 5's fused-expert
    # conversion (checkpoints store per-expert tensors). Loading through from_pretrained first restores every
    # weight; Trainer then restores optimizer, scheduler, data order and RNG state from the same directory.
    model, tokenizer = load_checkpoint(last or cfg.init)
    columns, stats = build_columns(cfg, tokenizer)
    dataset = Dataset.from_dict(columns)
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.lr,
        warmup_steps=math.ceil(cfg.warmup_ratio * _planned_steps(cfg, len(dataset))),
        lr_scheduler_type=cfg.lr_scheduler,
        max_length=cfg.max_length,
        packing=cfg.packing,
        gradient_checkpointing=cfg.gradient_checkpointing,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        eos_token=IM_END,  # turns end with <|im_end|>; keeps config.eos_token_id consistent with generation
        assistant_only_loss=False,  # our pre-tokenized `assistant_masks` column already masks the loss
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to=["tensorboard"],
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=True,
        bf16=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
    )
    model.config.use_cache = False
    optimizer = build_optimizer(model, cfg)
    trainer_cls = SFTTrainer
    if cfg.loss_agg == "record_mean":
        from agentrl.train.record_mean import RecordMeanSFTTrainer

        trainer_cls = RecordMeanSFTTrainer
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        optimizers=(optimizer, None),
        callbacks=[_jsonl_callback(out / "metrics.jsonl")],
    )
    start = time.time()
    result = trainer.train(resume_from_checkpoint=last)
    model.config.use_cache = True
    final = save_checkpoint(trainer.model, tokenizer, out / "final")
    return {
        "checkpoint": str(final),
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "wall_s": time.time() - start,
        "resumed": last is not None,
        **{f"data_{k}": v for k, v in stats.items()},
    }


def _planned_steps(cfg: SFTStageConfig, n: int) -> int:
    if cfg.max_steps > 0:
        return cfg.max_steps
    return max(1, math.ceil(n / (cfg.batch_size * cfg.grad_accum) * cfg.epochs))
