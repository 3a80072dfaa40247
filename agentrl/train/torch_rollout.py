"""`TorchSamplerRollout`: single-turn sampling from an in-process torch policy (no vLLM), for CPU-scale RL.

For each task, the K samples are one batch (same prompt, so no padding) decoded with a KV cache. Each token is
drawn from softmax(logits / T) with a generator seeded from the request seed, and its logprob is recorded as
log_softmax(logits / T): the same quantity vLLM's `processed_logprobs` gives (docs/rl.md, temperature rule).
Sampling stops per row at a stop token or at the budget (`budget - prompt_len` new tokens; then `truncated`).

The policy it samples from is a replica kept current by `ModuleSync` (the loop's `WeightSync`), so the trainer's
module is never used under no_grad mid-update. The real engine path is `AgentLoopRollout` over vLLM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import BaseModel, Field

from agentrl.schemas.trajectory import Trajectory, TrajectoryStatus
from agentrl.train.interfaces import RolloutRequest


class PromptTask(BaseModel):
    id: str
    task_type: str = "default"
    prompt: list[int] = Field(min_length=1)
    data: dict[str, Any] = Field(default_factory=dict, description="Whatever the reward function needs.")


class TorchSamplerRollout:
    def __init__(
        self, policy: torch.nn.Module, stop_ids: Sequence[int] = (), max_new_tokens: int | None = None
    ) -> None:
        self.policy = policy
        self.stop_ids = set(stop_ids)
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def __call__(self, request: RolloutRequest) -> list[Trajectory]:
        out: list[Trajectory] = []
        self.policy.eval()
        for t_idx, task in enumerate(request.tasks):
            room = request.budget_for(task.task_type) - len(task.prompt)
            if self.max_new_tokens is not None:
                room = min(room, self.max_new_tokens)
            gen = torch.Generator().manual_seed((request.seed * 7919 + t_idx) % 2**63)
            rows = self._sample(task.prompt, request.samples_per_task, room, request.temperature, gen)
            for k, (tokens, lps, stopped) in enumerate(rows):
                out.append(
                    Trajectory(
                        id=f"{task.id}@{request.step}#{k}",
                        task_id=task.id,
                        task_type=task.task_type,
                        group_id=f"{task.id}@{request.step}",
                        token_ids=task.prompt + tokens,
                        loss_mask=[0] * len(task.prompt) + [1] * len(tokens),
                        logprobs=[None] * len(task.prompt) + lps,
                        prompt_len=len(task.prompt),
                        status=TrajectoryStatus.ok if stopped else TrajectoryStatus.truncated,
                        policy_versions=[request.policy_version],
                        sampling={
                            "temperature": request.temperature,
                            "max_tokens": room,
                            "seed": request.seed,
                        },
                        metadata={"task": task.data},
                    )
                )
        return out

    def _sample(
        self, prompt: list[int], k: int, room: int, temperature: float, gen: torch.Generator
    ) -> list[tuple[list[int], list[float], bool]]:
        ids_KP = torch.tensor([prompt] * k)
        result = self.policy(input_ids=ids_KP, use_cache=True)
        cache = result.past_key_values
        logits_KV = result.logits[:, -1].float()
        tokens: list[list[int]] = [[] for _ in range(k)]
        lps: list[list[float]] = [[] for _ in range(k)]
        done = [False] * k
        for _ in range(room):
            logp_KV = torch.log_softmax(logits_KV / temperature, -1)
            next_K = torch.multinomial(logp_KV.exp(), 1, generator=gen).squeeze(-1)
            for i in range(k):
                if not done[i]:
                    tok = int(next_K[i])
                    tokens[i].append(tok)
                    lps[i].append(float(logp_KV[i, tok]))
                    done[i] = tok in self.stop_ids
            if all(done):
                break
            result = self.policy(input_ids=next_K[:, None], past_key_values=cache, use_cache=True)
            cache = result.past_key_values
            logits_KV = result.logits[:, -1].float()
        return [(tokens[i], lps[i], done[i]) for i in range(k)]

    def prompt_lengths(self, tasks: Sequence[Any]) -> dict[str, int]:
        lens: dict[str, int] = {}
        for t in tasks:
            lens[t.task_type] = max(lens.get(t.task_type, 0), len(t.prompt))
        return lens


class TokenSetReward:
    """Verifiable toy reward: the fraction of generated tokens that belong to `targets` (a CPU-scale RL task)."""

    def __init__(self, targets: Callable[[int], bool], success_at: float = 0.5) -> None:
        self.targets = targets
        self.success_at = success_at

    def __call__(self, trajectories: Sequence[Trajectory]):
        from agentrl.train.interfaces import RewardOutput

        rewards = []
        for t in trajectories:
            gen = [tok for tok, m in zip(t.token_ids, t.loss_mask, strict=True) if m]
            rewards.append(sum(self.targets(tok) for tok in gen) / max(len(gen), 1))
        return RewardOutput(rewards=rewards, success=[r >= self.success_at for r in rewards])
