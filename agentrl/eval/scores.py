"""Judge and critic scores for `agentrl eval`, next to success and tool-call validity.

- Judge: every evaluated trajectory is scored by the LLM judge (an OpenAI-compatible server) against its task's
  rubrics; reported as the mean over decided verdicts, with abstentions and token usage counted.
- Critic: the checkpoint judges its OWN samples, as in RL (`EngineCritic` through the same vLLM engine). K
  samples per task at `temperature`; every pair whose verifiable (environment) reward differs is asked in both
  orders, and the critic is scored against the known better sample (`critic_data.critic_accuracy`) under its
  verdict rule (`verdict`); the other rule's accuracy is reported next to it, so the position prior is visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentrl.rewards.engine_critic import VerdictRule
from agentrl.schemas.trajectory import Trajectory


def judge_scores(
    judge_config: Any,
    trajectories: Sequence[Trajectory],
    tasks: Sequence[dict[str, Any]],
    rubric_paths: Sequence[str] | None = None,
) -> dict[str, Any]:
    from agentrl.rewards.judge import Judge
    from agentrl.rewards.rubrics import load_rubrics

    judge = Judge(judge_config, load_rubrics(rubric_paths))
    try:
        results = judge.score_many(list(zip(trajectories, tasks, strict=True)))
        stats = judge.stats()
    finally:
        judge.close()
    decided = [r.value for r in results if not r.abstained]
    return {
        "judge_mean": sum(decided) / len(decided) if decided else None,
        "judge_scored": len(decided),
        "judge_abstained": len(results) - len(decided),
        "judge_abstentions": stats["abstentions"],
        "judge_usage": stats["usage"],
    }


def critic_scores(
    engine: Any,
    tokenizer: Any,
    tasks: Sequence[dict[str, Any]],
    env: Any,
    *,
    samples: int,
    temperature: float,
    max_tokens: int,
    max_model_len: int,
    prompt: Any = None,
    rubric_paths: Sequence[str] | None = None,
    seed: int = 0,
    verdict: VerdictRule = "swap_debiased",
) -> dict[str, Any]:
    from agentrl.eval.tool_use import evaluate_tool_use
    from agentrl.rewards.critic_data import build_critic_examples
    from agentrl.rewards.engine_critic import EngineCritic, accuracy_by_rule
    from agentrl.rewards.rubrics import load_rubrics

    if samples < 2:
        raise ValueError(f"critic scores need at least 2 samples per task, got {samples}")
    rollouts: list[Trajectory] = []
    for k in range(samples):
        _, trajs = evaluate_tool_use(
            engine,
            tokenizer,
            tasks,
            env,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed + 7919 * k,
        )
        for i, t in enumerate(trajs):
            t.group_id = tasks[i]["id"]  # the K samples of a task form one comparison group
        rollouts += trajs
    examples = build_critic_examples(rollouts, load_rubrics(rubric_paths), prompt=prompt)
    critic = EngineCritic(engine, tokenizer, max_prompt_tokens=max_model_len - 1, verdict=verdict)
    out: dict[str, Any] = {"critic_pairs": len({e.pair_key for e in examples}), "critic_verdict": verdict}
    if examples:
        by_rule = accuracy_by_rule(critic, examples)
        acc = by_rule[verdict]
        out.update(
            critic_accuracy=acc.accuracy,
            critic_pair_accuracy=acc.pair_accuracy,
            critic_order_consistency=acc.order_consistency,
            critic_abstained=acc.abstained,
            critic_forced_a_rate=critic.metrics()["critic/forced_a_rate"],
            **{f"critic_accuracy_{rule}": a.accuracy for rule, a in by_rule.items() if rule != verdict},
        )
    else:
        out["critic_accuracy"] = None  # every sample of every task got the same reward: nothing to compare
    return out
