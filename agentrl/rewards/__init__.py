"""Rewards: verifiable rewards, the LLM judge, the self-critique rubric reward and their composition.

Modules (import what you need; nothing heavy happens at import time):
- `base`: `RewardResult`, the `Reward` protocol, text helpers;
- `rubrics`: rubric schema and loader for `rubrics/`;
- `verifiers/`: answer match, unit tests, tool_world final state, instruction constraints, hack check;
- `judge` (+ `openai_client`, `judge_cache`, `transcript`): LLM-as-judge over an OpenAI-compatible API;
- `pairwise`, `critic_prompt`, `self_critique`: the self-critique rubric reward;
- `critic_data`: closed-loop critic refinement examples and critic accuracy;
- `compose`, `monitor`: per-task-type weighting and the reward-hacking monitor;
- `stack`, `reward_fn`: the assembled stack (config, group scoring, metrics, eval summary) and the RL loop's
  `RewardFn` adapter, which also collects closed-loop critic data.
"""

from agentrl.rewards.base import Reward, RewardError, RewardResult

__all__ = ["Reward", "RewardError", "RewardResult"]
