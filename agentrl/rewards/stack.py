"""The assembled reward stack: config tree, builder, group scoring and the metrics the trainer/eval report.

`RewardsConfig` is the `rewards:` section of a run config. `RewardStack.score_group` scores the K samples of
one prompt: the self-critique reward first (it needs the whole group), then every per-sample reward, then the
per-task-type composition (which also feeds the reward-hacking monitor). `metrics()` flattens judge usage and
abstentions, critic position bias and monitor rates into one dict; `summarize()` turns a batch of composed
results into per-component means, which is what `agentrl eval` prints next to success.

Default weights (K2 gives none; ours): verifiable tasks are scored by their verifier, with a small judge share
where a judge is configured; chat prompts by self-critique and the judge. The hack check gates instruction,
code and tool tasks. Missing components (no judge configured) simply drop out of the weighted mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentrl.errors import ConfigError
from agentrl.rewards.base import Reward, RewardResult, task_field
from agentrl.rewards.compose import ComposeConfig, RewardComposer, TaskRewardSpec
from agentrl.rewards.judge import Judge, JudgeConfig
from agentrl.rewards.openai_client import ChatClient, ChatClientConfig
from agentrl.rewards.rubrics import RubricSet, load_rubrics
from agentrl.rewards.self_critique import CriticFn, SelfCritiqueConfig, SelfCritiqueReward, chat_client_critic
from agentrl.rewards.verifiers import (
    AnswerMatch,
    CodeRunner,
    ConstraintVerifier,
    EnvRewardVerifier,
    FinalStateMatch,
    HackCheck,
    SubprocessCodeRunner,
    UnitTestVerifier,
)
from agentrl.schemas.trajectory import Trajectory


def default_compose_config() -> ComposeConfig:
    gate = ["hack_check"]
    subj = ["judge", "self_critique"]
    return ComposeConfig(
        task_types={
            "tool_use": TaskRewardSpec(
                weights={"tool_state": 1.0, "judge": 0.1},
                gates=gate,
                verifiable=["tool_state"],
                subjective=subj,
            ),
            "code": TaskRewardSpec(
                weights={"unit_tests": 1.0, "judge": 0.1},
                gates=gate,
                verifiable=["unit_tests"],
                subjective=subj,
            ),
            "math": TaskRewardSpec(weights={"answer": 1.0}, verifiable=["answer"], subjective=subj),
            "reasoning": TaskRewardSpec(weights={"answer": 1.0}, verifiable=["answer"], subjective=subj),
            "instruction": TaskRewardSpec(
                weights={"constraints": 1.0, "judge": 0.5},
                gates=gate,
                verifiable=["constraints"],
                subjective=subj,
            ),
            "chat": TaskRewardSpec(weights={"self_critique": 1.0, "judge": 0.5}, subjective=subj),
        }
    )


class VerifierOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    numeric_rel_tol: float = Field(default=1e-6, ge=0)
    numeric_abs_tol: float = Field(default=1e-9, ge=0)
    partial_credit: bool = Field(
        default=False, description="Fractional credit for tests, constraints, state."
    )
    code_runner: Literal["sandbox", "env_http", "subprocess_unsafe"] = Field(
        default="sandbox",
        description="sandbox: the code env's bubblewrap jail in process; env_http: a code env server; "
        "subprocess_unsafe: a bare subprocess (no isolation; trusted code only).",
    )
    code_env_url: str | None = None
    code_env_token: str | None = None
    code_timeout_s: float = Field(default=10.0, gt=0)
    hack_penalties: dict[str, float] = Field(default_factory=dict)


class RewardsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rubric_paths: list[str] | None = Field(default=None, description="None: the repo's rubrics/ folder.")
    verifiers: VerifierOptions = Field(default_factory=VerifierOptions)
    judge: JudgeConfig | None = Field(default=None, description="None: no LLM judge.")
    critic: ChatClientConfig | None = Field(
        default=None,
        description="Critic over an OpenAI-compatible server; None: pass critic_fn (the engine).",
    )
    self_critique: SelfCritiqueConfig = Field(default_factory=SelfCritiqueConfig)
    compose: ComposeConfig = Field(default_factory=default_compose_config)


def _code_reward(opts: VerifierOptions, runner: CodeRunner | None) -> Reward:
    if runner is not None:
        return UnitTestVerifier(runner, timeout_s=opts.code_timeout_s, partial_credit=opts.partial_credit)
    if opts.code_runner == "subprocess_unsafe":
        runner = SubprocessCodeRunner()
    elif opts.code_runner == "env_http":
        if not opts.code_env_url:
            raise ConfigError("rewards.verifiers.code_runner=env_http needs rewards.verifiers.code_env_url")
        from agentrl.rewards.verifiers.code_env import CodeEnvVerifier
        from environments.protocol.client import EnvClient

        client = EnvClient(opts.code_env_url, token=opts.code_env_token, timeout=opts.code_timeout_s + 30)
        return CodeEnvVerifier(client, partial_credit=opts.partial_credit)
    else:
        try:
            from agentrl.rewards.verifiers.code_env import SandboxCodeRunner
            from environments.code.env import default_limits
            from environments.sandbox import make_sandbox

            runner = SandboxCodeRunner(make_sandbox(default_limits()))
        except Exception as exc:  # ImportError or SandboxUnavailable
            raise ConfigError(
                f"rewards.verifiers.code_runner=sandbox: the bubblewrap sandbox is unavailable ({exc}); "
                "use code_runner=env_http with a code env server, or subprocess_unsafe for trusted code"
            ) from None
    return UnitTestVerifier(runner, timeout_s=opts.code_timeout_s, partial_credit=opts.partial_credit)


class RewardStack:
    def __init__(
        self,
        config: RewardsConfig,
        *,
        rubrics: RubricSet | None = None,
        critic_fn: CriticFn | None = None,
        code_runner: CodeRunner | None = None,
    ) -> None:
        self.config = config
        self.rubrics = rubrics or load_rubrics(config.rubric_paths)
        opts = config.verifiers
        wanted = {n for spec in config.compose.task_types.values() for n in [*spec.weights, *spec.gates]}
        if config.compose.default:
            wanted |= {*config.compose.default.weights, *config.compose.default.gates}
        rewards: dict[str, Reward] = {
            "answer": AnswerMatch(rel_tol=opts.numeric_rel_tol, abs_tol=opts.numeric_abs_tol),
            "constraints": ConstraintVerifier(partial_credit=opts.partial_credit),
            "tool_state": FinalStateMatch.for_tool_world(partial_credit=opts.partial_credit),
            "hack_check": HackCheck(penalties=opts.hack_penalties),
            "env": EnvRewardVerifier(),
        }
        if "unit_tests" in wanted:
            rewards["unit_tests"] = _code_reward(opts, code_runner)
        self.judge = Judge(config.judge, self.rubrics) if config.judge else None
        if self.judge:
            rewards["judge"] = self.judge
        unknown = wanted - set(rewards) - {"judge", "self_critique"}
        if unknown:
            raise ConfigError(
                f"rewards.compose names unknown rewards: {sorted(unknown)} (known: {sorted(rewards)})"
            )
        self._critic_client = ChatClient(config.critic) if config.critic else None
        if critic_fn is None and self._critic_client is not None:
            critic_fn = chat_client_critic(self._critic_client, max_concurrency=config.critic.max_concurrency)
        self.self_critique = (
            SelfCritiqueReward(critic_fn, self.rubrics, config.self_critique) if critic_fn else None
        )
        self.composer = RewardComposer(config.compose, rewards)
        self._critic_groups = 0
        self._critic_position_a = 0.0

    def score_group(self, samples: Sequence[Trajectory], task: Any = None) -> list[RewardResult]:
        """Composed rewards for the K samples of one prompt (all of one task type)."""
        if not samples:
            return []
        task_type = samples[0].task_type
        if task is not None and task_field(task, "task_type", required=False):
            task_type = str(task_field(task, "task_type"))
        spec = self.config.compose.spec_for(task_type)
        critique: list[RewardResult | None] = [None] * len(samples)
        if self.self_critique is not None and spec.weights.get("self_critique", 0) > 0:
            critique = list(self.self_critique.score_group(samples, task))
            decided = [r for r in critique if not r.abstained]
            if decided:
                self._critic_groups += 1
                self._critic_position_a += decided[0].details["position_a_rate"]
        out = []
        for sample, crit in zip(samples, critique, strict=True):
            pre = {"self_critique": crit} if crit is not None else None
            out.append(self.composer.score(sample, task, precomputed=pre))
        return out

    def metrics(self) -> dict[str, float]:
        m: dict[str, float] = dict(self.composer.monitor.metrics())
        if self.judge:
            s = self.judge.stats()
            m.update({f"judge/{k}": float(v) for k, v in s.items() if isinstance(v, int | float)})
            m.update({f"judge/{k}": float(v) for k, v in s["usage"].items() if isinstance(v, int | float)})
            m["judge/abstentions"] = float(sum(s["abstentions"].values()))
        if self._critic_groups:
            m["critic/groups"] = float(self._critic_groups)
            m["critic/position_a_rate"] = self._critic_position_a / self._critic_groups
        return m

    def close(self) -> None:
        if self.judge:
            self.judge.close()
        if self._critic_client:
            self._critic_client.close()


def summarize(results: Sequence[RewardResult], *, success_threshold: float = 1.0) -> dict[str, Any]:
    """Per-component means over composed results (abstentions excluded, and counted), plus success rate
    (verifiable >= threshold) and the mean total: the numbers `agentrl eval` reports."""
    comps: dict[str, list[float]] = {}
    abstained: dict[str, int] = {}
    verifiable = [r.details.get("verifiable") for r in results if r.details.get("verifiable") is not None]
    for r in results:
        for name, part in r.details.get("components", {}).items():
            if part["abstained"]:
                abstained[name] = abstained.get(name, 0) + 1
            else:
                comps.setdefault(name, []).append(part["value"])
    totals = [r.value for r in results if not r.abstained]
    out: dict[str, Any] = {
        "n": len(results),
        "reward_mean": sum(totals) / len(totals) if totals else None,
        "success_rate": sum(v >= success_threshold for v in verifiable) / len(verifiable)
        if verifiable
        else None,
    }
    for name in sorted(set(comps) | set(abstained)):
        vals = comps.get(name, [])
        out[f"{name}_mean"] = sum(vals) / len(vals) if vals else None
        out[f"{name}_abstained"] = abstained.get(name, 0)
    return out


CriticFactory = Callable[[], CriticFn]
