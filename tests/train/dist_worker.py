"""Worker for tests/train/test_distributed.py: one PolicyLearner update on an FSDP2-sharded k2-tiny (gloo, CPU)."""

from __future__ import annotations

import os
import sys

import torch

from agentrl.train.interfaces import RolloutRequest
from agentrl.train.learner import PolicyLearner
from agentrl.train.rl_config import RLConfig
from agentrl.train.schedules import ConstantSchedule
from agentrl.train.sources import FixedPoolRollout
from tests.train.helpers import PAD, pool_tasks, tiny_model

CONFIG = {
    "tasks_per_step": 4,
    "optimizer": {"muonclip": {"lr": 2e-3}},
    "groups_per_microbatch": 1,
}


def batch():
    torch.manual_seed(0)
    trajs = FixedPoolRollout()(RolloutRequest(0, 0, pool_tasks(4), 4, 0.9, 0))
    return trajs, [t.reward for t in trajs]


def update(rank: int = 0, world_size: int = 1) -> tuple[torch.nn.Module, dict]:
    from agentrl.train.distributed import shard_model

    cfg = RLConfig.model_validate(CONFIG)
    model = tiny_model()
    if world_size > 1:
        shard_model(model, world_size)
    learner = PolicyLearner(
        model, cfg.optimizer.build()(model), cfg.objective.build(), cfg, PAD, ConstantSchedule(1.0),
        rank=rank, world_size=world_size,
    )  # fmt: skip
    trajs, rewards = batch()
    metrics = learner.update(trajs, rewards, step=0, temperature=0.9)
    return model, metrics


def worker(rank: int, world_size: int, out: str, port: int) -> None:
    import faulthandler

    import torch.distributed as dist

    from agentrl.train.distributed import full_state_dict

    faulthandler.enable()  # a crash in a spawned rank then prints its Python stack
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        model, metrics = update(rank, world_size)
        state = full_state_dict(model)
        if rank == 0:
            torch.save({"state": state, "metrics": metrics}, out)
    finally:
        dist.destroy_process_group()
    # The work is done and saved. About 1 run in 25 the interpreter's teardown then aborted a rank ("terminate
    # called without an active exception", no Python frame: a native thread still joinable at exit; SIGSEGV once
    # in CI), which mp.spawn reports as a failed test. Skip the teardown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
