"""Auxiliary losses' solo steps: after the RL update, `solo_steps` optimizer steps on the auxiliary loss alone,
each on its next batch, with exactly that loss's gradient."""

from __future__ import annotations

import torch

from agentrl.train.interfaces import RolloutRequest
from agentrl.train.learner import PolicyLearner
from agentrl.train.ptx import PTXSampler, SFTExample, ptx_loss
from agentrl.train.rl_config import RLConfig
from agentrl.train.schedules import ConstantSchedule
from agentrl.train.sources import FixedPoolRollout
from tests.train.helpers import PAD, pool_tasks, tiny_model

EXAMPLES = [SFTExample([1, 5, 6, 7, 8, 9], [0, 0, 0, 1, 1, 1]), SFTExample([1, 10, 11, 12], [0, 0, 1, 1])]


class StepRecorder(torch.optim.SGD):
    """SGD with lr 0 (the weights never move) that records the gradient of every step."""

    def __init__(self, params) -> None:
        super().__init__(params, lr=0.0)
        self.steps: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        grads = [
            p.grad.clone() if p.grad is not None else None for g in self.param_groups for p in g["params"]
        ]
        self.steps.append(grads)
        return super().step(closure)


class ToyAux:
    """An auxiliary next-token loss on fixed examples."""

    name = "toy"

    def __init__(self, beta: float, solo_steps: int) -> None:
        self.beta, self.solo_steps = beta, solo_steps
        self.sampler = PTXSampler(EXAMPLES, 1, PAD, seed=0)

    def refresh(self) -> None: ...

    def next_batch(self):
        return self.sampler.next_batch()

    def loss(self, model, input_ids_BT, attention_mask_BT, loss_mask_BT):
        return ptx_loss(model, input_ids_BT, attention_mask_BT, loss_mask_BT)


def _update(aux: ToyAux):
    model = tiny_model()
    cfg = RLConfig(optimizer={"grad_clip": None}, tasks_per_step=2)
    opt = StepRecorder(model.parameters())
    learner = PolicyLearner(
        model, opt, cfg.objective.build(), cfg, PAD, ConstantSchedule(1.0), aux_losses=[aux]
    )
    torch.manual_seed(0)
    trajs = FixedPoolRollout()(RolloutRequest(0, 0, pool_tasks(2), 4, 1.0, 0))
    metrics = learner.update(trajs, [t.reward for t in trajs], step=0, temperature=1.0)
    return opt.steps, metrics


def test_solo_steps_apply_the_aux_gradient_alone_on_its_next_batches():
    steps_plain, metrics_plain = _update(ToyAux(beta=0.5, solo_steps=0))
    steps, metrics = _update(ToyAux(beta=0.5, solo_steps=2))
    assert len(steps) == len(steps_plain) + 2
    assert "loss/toy_solo" not in metrics_plain
    # the RL update is the same; the aux sampler's first batch went into it, the next two into the solo steps
    for a, b in zip(steps_plain[0], steps[0], strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    reference = PTXSampler(EXAMPLES, 1, PAD, seed=0)
    reference.next_batch()
    losses = []
    for solo in steps[-2:]:
        fresh = tiny_model()
        loss = ptx_loss(fresh, *reference.next_batch())
        loss.backward()
        losses.append(float(loss.detach()))
        for got, p in zip(solo, fresh.parameters(), strict=True):
            want = p.grad if p.grad is not None else torch.zeros_like(p)
            torch.testing.assert_close(got if got is not None else torch.zeros_like(p), want)
    assert metrics["loss/toy_solo"] == sum(losses) / 2


def test_no_solo_steps_when_the_aux_loss_is_off():
    steps_off, metrics = _update(ToyAux(beta=0.0, solo_steps=3))
    steps_plain, _ = _update(ToyAux(beta=0.5, solo_steps=0))
    assert len(steps_off) == len(steps_plain)
    assert "loss/toy_solo" not in metrics
