"""Per-sample budgets truncate and penalise; run budgets stop with a reason and survive resume."""

import pytest

from agentrl.errors import ConfigError
from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus
from agentrl.train.budget import RunBudget, RunBudgetConfig, SampleBudget, SampleBudgetConfig


def _traj(n_prompt, n_gen, task_type="math", status=TrajectoryStatus.ok):
    n = n_prompt + n_gen
    return Trajectory(
        id=f"t{n}",
        task_id="x",
        task_type=task_type,
        token_ids=list(range(n)),
        loss_mask=[0] * n_prompt + [1] * n_gen,
        logprobs=[None] * n_prompt + [-0.5] * n_gen,
        prompt_len=n_prompt,
        status=status,
    )


def test_over_budget_sample_is_truncated_and_penalised():
    budget = SampleBudget(SampleBudgetConfig(default=100, per_task={"math": 10}, penalty=-0.5))
    long_math = budget.truncate(_traj(4, 12))
    fits = budget.truncate(_traj(4, 6))
    other = budget.truncate(_traj(4, 12, task_type="chat"))  # default budget 100
    assert long_math.token_ids == list(range(10)) and long_math.loss_mask == [0] * 4 + [1] * 6
    assert len(long_math.logprobs) == 10 and long_math.status == TrajectoryStatus.truncated
    assert long_math.metadata["truncated_from"] == 16
    assert fits.status == TrajectoryStatus.ok and other.status == TrajectoryStatus.ok
    # Already stopped by the engine at the limit: also penalised.
    engine_cut = _traj(4, 6, status=TrajectoryStatus.truncated)
    rewards = budget.apply_penalty([long_math, fits, other, engine_cut], [1.0, 1.0, 0.25, 0.0])
    assert rewards == [0.5, 1.0, 0.25, -0.5]
    m = budget.metrics([long_math, fits, other, engine_cut])
    assert m["budget/truncation_rate"] == 0.5
    assert m["budget/truncation_rate/math"] == pytest.approx(2 / 3)
    assert m["budget/use/math"] == pytest.approx((10 / 10 + 10 / 10 + 10 / 10) / 3)
    assert m["budget/use/chat"] == pytest.approx(16 / 100)


def test_budget_below_prompt_length_is_a_config_error():
    budget = SampleBudget(SampleBudgetConfig(default=64, per_task={"code": 12}))
    budget.check_prompts({"chat": 20})
    with pytest.raises(
        ConfigError, match=r"budget 12 for task type 'code' is not above its longest prompt \(12"
    ):
        budget.check_prompts({"chat": 20, "code": 12})
    with pytest.raises(ConfigError, match="does not fit"):
        budget.truncate(_traj(12, 3, task_type="code"))


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_run_budgets_report_which_ran_out():
    assert RunBudget(RunBudgetConfig()).exhausted() is None
    b = RunBudget(RunBudgetConfig(max_tokens=100))
    b.charge(tokens=99)
    assert b.exhausted() is None
    b.charge(tokens=1)
    assert "token budget used up: 100 >= run_budget.max_tokens=100" in b.exhausted()
    j = RunBudget(RunBudgetConfig(max_judge_tokens=10))
    j.charge(judge_tokens=11)
    assert "judge token budget" in j.exhausted()
    clock = _Clock()
    w = RunBudget(RunBudgetConfig(max_wall_s=5), clock=clock)
    clock.t += 4
    assert w.exhausted() is None
    state = w.state_dict()
    resumed = RunBudget(RunBudgetConfig(max_wall_s=5), clock=clock)  # a new process continues the count
    resumed.load_state_dict(state)
    clock.t += 1
    assert "wall-clock budget" in resumed.exhausted()
