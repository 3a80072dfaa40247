"""`TorchSamplerRollout`: single-turn sampling from an in-process torch policy (no vLLM), for CPU-scale RL.

All tasks' K samples are one left-padded batch (explicit position ids) decoded with a KV cache. Each token is
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
        self.policy.eval()
        prompts, rooms, keys = [], [], []
        for task in request.tasks:
            room = request.budget_for(task.task_type) - len(task.prompt)
            if self.max_new_tokens is not None:
                room = min(room, self.max_new_tokens)
            for k in range(request.samples_per_task):
                prompts.append(task.prompt)
                rooms.append(room)
                keys.append((task, k))
        gen = torch.Generator().manual_seed(request.seed % 2**63)
        rows = self._sample(prompts, rooms, request.temperature, gen)
        out: list[Trajectory] = []
        for (task, k), room, (tokens, lps, stopped) in zip(keys, rooms, rows, strict=True):
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
                    sampling={"temperature": request.temperature, "max_tokens": room, "seed": request.seed},
                    metadata={"task": task.data},
                )
            )
        return out

    def _sample(
        self, prompts: list[list[int]], rooms: list[int], temperature: float, gen: torch.Generator
    ) -> list[tuple[list[int], list[float], bool]]:
        """All rows in one left-padded batch with explicit positions, so padding never shifts a row's positions."""
        n, width = len(prompts), max(len(p) for p in prompts)
        ids_NP = torch.zeros((n, width), dtype=torch.long)
        attn_NP = torch.zeros((n, width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids_NP[i, width - len(p) :] = torch.tensor(p)
            attn_NP[i, width - len(p) :] = 1
        device = next(self.policy.parameters()).device
        ids_NP, attn_NP = ids_NP.to(device), attn_NP.to(device)
        pos_NP = (attn_NP.cumsum(-1) - 1).clamp(min=0)
        result = self.policy(input_ids=ids_NP, attention_mask=attn_NP, position_ids=pos_NP, use_cache=True)
        cache, attn, pos_N = result.past_key_values, attn_NP, pos_NP[:, -1]
        logits_NV = result.logits[:, -1].float()
        tokens: list[list[int]] = [[] for _ in range(n)]
        lps: list[list[float]] = [[] for _ in range(n)]
        done = [room <= 0 for room in rooms]
        stopped = [False] * n
        for _ in range(max(rooms)):
            logp_NV = torch.log_softmax(logits_NV / temperature, -1)
            logp_cpu_NV = logp_NV.cpu()
            # Draw on the CPU generator so a run's samples do not depend on the device.
            next_N = torch.multinomial(logp_cpu_NV.exp(), 1, generator=gen).squeeze(-1)
            for i in range(n):
                if done[i]:
                    continue
                tok = int(next_N[i])
                tokens[i].append(tok)
                lps[i].append(float(logp_cpu_NV[i, tok]))
                stopped[i] = tok in self.stop_ids
                done[i] = stopped[i] or len(tokens[i]) >= rooms[i]
            if all(done):
                break
            attn = torch.cat([attn, torch.ones((n, 1), dtype=attn.dtype, device=device)], dim=1)
            pos_N = pos_N + 1
            result = self.policy(
                input_ids=next_N[:, None].to(device), attention_mask=attn, position_ids=pos_N[:, None],
                past_key_values=cache, use_cache=True,
            )  # fmt: skip
            cache = result.past_key_values
            logits_NV = result.logits[:, -1].float()
        return [(tokens[i], lps[i], stopped[i]) for i in range(n)]

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
