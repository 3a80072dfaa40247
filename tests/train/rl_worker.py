"""A tiny, fully deterministic RL run used by the resume tests (run as a subprocess so it can be SIGKILLed).

    python -m tests.train.rl_worker RUN_DIR STEPS

k2-tiny (2 layers, 16 experts), MuonClip with QK-Clip and aux-free balancing, the K2 objective, PTX, temperature
decay, the fixed-pool rollout (draws from the global torch RNG) and a checkpoint after every step.
"""

from __future__ import annotations

import sys

import torch

from agentrl.train.ptx import SFTExample
from agentrl.train.rl_config import RLConfig
from agentrl.train.rl_loop import RLTrainer
from agentrl.train.sources import FixedPoolRollout, PrecomputedReward
from tests.train.helpers import PAD, pool_tasks, tiny_model

PTX = [SFTExample([1, 5, 6, 7, 8], [0, 0, 1, 1, 1]), SFTExample([1, 9, 10, 11], [0, 0, 1, 1])]


def make_trainer(run_dir: str, steps: int, **overrides) -> RLTrainer:
    cfg = RLConfig.model_validate(
        {
            "run_dir": run_dir,
            "steps": steps,
            "seed": 7,
            "tasks_per_step": 2,
            "samples_per_task": 4,
            "temperature": {"kind": "cosine", "start": 1.2, "end": 0.6, "steps": steps},
            "optimizer": {"muonclip": {"lr": 2e-3, "weight_decay": 0.0}},
            "ptx": {"beta": 0.1, "batch_size": 2},
            "budget": {"default": 18, "penalty": -0.25},
            "metrics": {"progress": False, "tensorboard": False, "report": False},
            **overrides,
        }
    )
    return RLTrainer(
        cfg,
        tiny_model(seed=0),
        pool_tasks(6),
        FixedPoolRollout(),
        PrecomputedReward(),
        cfg.objective.build(),
        cfg.optimizer.build(),
        pad_id=PAD,
        ptx_examples=PTX,
    )


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    trainer = make_trainer(sys.argv[1], int(sys.argv[2]))
    print(f"starting at step {trainer.step}", flush=True)
    result = trainer.run()
    print(f"done: {result.steps} steps, {result.stop_reason}", flush=True)


if __name__ == "__main__":
    main()
