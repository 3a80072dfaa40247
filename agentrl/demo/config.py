"""`DemoConfig`: one typed tree for the main job; each stage keeps its own config section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agentrl.synth.config import SynthConfig
from agentrl.train.rl_config import RLConfig
from agentrl.train.sft import SFTStageConfig


def _demo_rl() -> RLConfig:
    return RLConfig.model_validate(
        {
            "steps": 30,
            "tasks_per_step": 8,
            "samples_per_task": 4,
            "temperature": {"kind": "linear", "start": 1.0, "end": 0.6, "steps": 30},
            "budget": {"default": 768, "penalty": -0.5},
            "optimizer": {"name": "muonclip", "muonclip": {"lr": 1e-3, "weight_decay": 0.0}},
            "checkpoint": {"every": 10},
            "metrics": {"progress": False},
        }
    )


class TokenizerStageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    vocab_size: int = Field(2048, ge=300)
    """Byte-level BPE vocabulary, trained on the synthetic train split (rendered in the K2 chat format)."""
    max_texts: int = Field(3000, ge=10)
    """Train the tokenizer on at most this many records."""


class DemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    run_dir: str = "runs/demo"
    """Everything the demo writes goes here: config, data, checkpoints, metrics, report."""
    seed: int = 0
    preset: str = "k2-tiny"
    synth: SynthConfig = SynthConfig(target=5000)
    tokenizer: TokenizerStageConfig = TokenizerStageConfig()
    sft: SFTStageConfig = SFTStageConfig(max_steps=400, batch_size=16, lr=3e-3)
    eval_tasks: int = Field(100, ge=1)
    """Held-out tasks per evaluation (base, after SFT, after RL)."""
    eval_max_tokens: int = Field(384, ge=16)
    """Generated-token budget per evaluation episode."""
    rl: RLConfig = Field(default_factory=_demo_rl)
    """The RL stage (K2 objective, MuonClip, temperature decay, budget control) on tool_world's RL tasks."""
    rl_task_pool: int = Field(400, ge=1)
    """RL prompts drawn from the synth RL split."""
    max_model_len: int = Field(1024, ge=128)
    """vLLM context length."""


def quick_overrides() -> list[str]:
    """`--quick`: every stage, minutes not tens of minutes (make test runs it)."""
    return [
        "synth.target=300",
        "synth.tasks.heldout=40",
        "synth.tasks.rl=80",
        "tokenizer.max_texts=300",
        "sft.max_steps=30",
        "sft.batch_size=8",
        "eval_tasks=16",
        "rl.steps=2",
        "rl.tasks_per_step=2",
        "rl.samples_per_task=2",
        "rl.temperature.steps=2",
        "rl.checkpoint.every=1",
        "rl_task_pool=16",
    ]
