"""`SynthConfig`: the typed config of `agentrl synth` (defaults = the embedded tiny default, configs/synth.yaml).

The defaults are tuned for the demo's tiny K2 policy (issue #9): short tool names and values, 1–3 tool calls
per episode, entity values that must be copied, a level mix in the SFT data that under-covers multi-step tasks
(held-out and RL tasks use an even mix), and a procedural agent that errs now and then so some kept
demonstrations contain a recovered mistake. Those knobs are what leaves RL room to improve on SFT.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentrl.rewards.openai_client import ChatClientConfig

ROLES = ("tool_designer", "task_writer", "user", "agent", "judge")


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class McpServerConfig(_Cfg):
    """An MCP server to import tools from: a stdio command (with args) or a streamable-HTTP URL."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                f"mcp server {self.name!r}: give exactly one of `command` (stdio) or `url` (HTTP)"
            )
        return self


class EvolveConfig(_Cfg):
    """Hierarchical domain evolution (K2 §3.1): categories -> domains -> tools."""

    categories: int = Field(default=4, ge=0, description="How many categories to evolve domains in.")
    domains_per_category: int = Field(default=1, ge=0)


class ToolsConfig(_Cfg):
    builtin: bool = Field(default=True, description="Use tool_world's hand-written domains.")
    domain_files: list[str] = Field(default_factory=list, description="Extra domain YAML/JSON files or dirs.")
    function_files: list[str] = Field(default_factory=list, description="OpenAI / BFCL function-doc files.")
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)
    evolve: EvolveConfig = Field(default_factory=EvolveConfig)
    max_tools_per_agent: int = Field(default=3, ge=1, le=16)
    agents_per_domain: int = Field(default=6, ge=1)
    finder_result: Literal["row", "key"] = Field(
        default="row",
        description="What a finder (a lookup on one non-key column, `find_order(user)`) returns: the whole `row`, "
        "or only its `key` and the searched column; a task that needs more of the row then fetches it by id "
        "(agentrl/synth/finder_result.py).",
    )


class TasksConfig(_Cfg):
    # Level = number of tool calls the task needs (1..3). Train under-covers multi-step tasks on purpose.
    train_level_weights: list[float] = Field(default=[0.6, 0.3, 0.1], min_length=1)
    eval_level_weights: list[float] = Field(default=[1.0, 1.0, 1.0], min_length=1)
    heldout: int = Field(default=300, ge=0, description="Held-out eval tasks (unseen entity values).")
    rl: int = Field(default=1000, ge=0, description="RL prompts (train-partition values, fresh tasks).")
    vague_rate: float = Field(default=0.15, ge=0, le=1, description="User leaves the id out at first.")
    fail_rate: float = Field(default=0.1, ge=0, le=0.9, description="Transient tool failures per call.")
    partial_rate: float = Field(default=0.2, ge=0, le=0.9, description="Partial pages for list tools.")
    max_steps: int = Field(default=8, ge=1)
    values: Literal["open", "closed"] = Field(
        default="open",
        description="Entity values: `open` = unlimited, held-out tasks use values never seen in training; "
        "`closed` = fixed pools shared by all splits, one token each with an entity-aware tokenizer "
        "(environments/tool_world/values.py; for policies too small to spell unseen words).",
    )
    sft_excluded_templates: list[str] = Field(
        default_factory=list,
        description="Globs `domain.template` kept out of the SFT data but present in held-out and RL tasks "
        "(the strongest lever for RL headroom: the policy must compose them from what it saw).",
    )
    reply_style: Literal["prose", "quoted"] = Field(
        default="prose",
        description="How a reply states a value read from a tool result: `prose` as the template words it, "
        '`quoted` as the tool result prints it (`"balance":583`), so the policy can copy it (agentrl/synth/reply_style.py).',
    )


class AgentConfig(_Cfg):
    """The procedural demonstrator's error model (mistakes are filtered by the judge or recovered from)."""

    error_rate: float = Field(default=0.12, ge=0, le=1, description="Per tool call, chance of a mistake.")
    recover_rate: float = Field(default=0.5, ge=0, le=1, description="Chance to fix a mistake it sees.")
    give_up_rate: float = Field(default=0.3, ge=0, le=1, description="Chance to give up after 'busy'.")
    shortcut_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Per episode whose plan has a lookup (a `get`/`list` call whose result it copies from), "
        "chance that the demonstrator skips the lookups and uses what it already knows: the world state is "
        "visible to a generator that also plays the tools, as it is to the procedural one. A write gets the "
        "row id directly, a question its answer without a call, unless the episode's task grounds its required "
        "outputs (`judge.require_grounded_outputs`, default true): then the answer would score 0 and questions are "
        "never shortcut. The outcome of a shortcut is right, so a judge that checks outcomes keeps it "
        "(`judge.require_tool_pattern=false`); a policy that imitates it has to guess.",
    )
    guess_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Of the episodes drawn for `shortcut_rate` whose plan has a write, the share in which the "
        "demonstrator guesses instead: it issues the first write with a made-up value for every argument the "
        "request does not state (the row id a lookup would return), gets tool_world's not-found error, then "
        "makes the lookup it skipped and finishes the plan (mistakes `guessed`, `recovered`). What a policy "
        "that guesses ids should do next; without it the demonstrations never show a not-found error.",
    )
    shortcut_personas: list[Literal["plain", "terse", "polite"]] = Field(  # user_sim.PERSONAS
        default_factory=list,
        description="Shortcut only episodes whose user has one of these personas (`plain`, `terse`, `polite`; "
        "empty: every persona). With `shortcut_rate=1` the demonstrator's habit is systematic, not a coin flip: "
        "the SFT policy learns it as a rule of the request's wording, and RL has one decision to unlearn.",
    )
    shortcut_rate_others: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="With `shortcut_personas`, the shortcut chance for the other personas (`shortcut_rate` is "
        "theirs). A rule that is not absolute (e.g. 0.75 for polite users, 0.25 for the rest) still decides the "
        "greedy policy by persona, while sampling keeps both behaviours for RL to compare.",
    )


class JudgeConfig(_Cfg):
    """Which rubric items the procedural judge requires; every item is scored and recorded either way."""

    require_tool_pattern: bool = Field(
        default=True,
        description="Reject trajectories whose successful calls do not contain the expected tool pattern. "
        "False keeps every trajectory that meets the success criteria (K2 §3.1: final state, required outputs, "
        "valid calls, retries, clarification) whatever calls led there, as an outcome judge does.",
    )
    require_grounded_outputs: bool = Field(
        default=True,
        description="Score the episode as tool_world does for eval and RL: a required output counts only if the "
        "agent was told it (`TaskSpec.grounded_outputs`). False plays each episode with grounding off, so a "
        "privileged demonstrator's answer without the lookup (`agent.shortcut_rate`) passes too: an imperfect "
        "generator whose guess-like demonstrations RL's grounded reward then corrects. The task files keep "
        "grounding on either way.",
    )


class BackendConfig(_Cfg):
    """Which backend plays each LLM role. `procedural` is offline and deterministic (the default)."""

    default: Literal["procedural", "endpoint"] = "procedural"
    roles: dict[str, Literal["procedural", "endpoint"]] = Field(default_factory=dict)
    endpoint: ChatClientConfig = Field(
        default_factory=lambda: ChatClientConfig(model="policy", max_tokens=256)
    )
    probe_timeout_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _known_roles(self) -> BackendConfig:
        bad = sorted(set(self.roles) - set(ROLES))
        if bad:
            raise ValueError(f"unknown roles {bad}; known: {list(ROLES)}")
        return self

    def kind(self, role: str) -> str:
        return self.roles.get(role, self.default)


class DedupConfig(_Cfg):
    near: bool = True
    threshold: float = Field(default=0.9, gt=0, le=1, description="Estimated Jaccard of word 3-grams.")
    num_perm: int = Field(default=64, ge=8, le=512)
    bands: int = Field(default=16, ge=1)


class SynthConfig(_Cfg):
    seed: int = 0
    out_dir: str = "runs/synth"
    target: int = Field(default=5000, ge=1, description="Accepted trajectories to produce.")
    max_attempts_factor: float = Field(default=3.0, ge=1.0, description="Give up after target*factor tries.")
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    tasks: TasksConfig = Field(default_factory=TasksConfig)
    agent: AgentConfig = Field(default_factory=AgentConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    backend: BackendConfig = Field(default_factory=BackendConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    write_rubrics: bool = True
    critic_pairs: int = Field(
        default=0,
        ge=0,
        description="For up to this many accepted demonstrations, also replay the task with one plausible mistake "
        "and keep the pair when tool_world scores the mistake lower (critic_pairs.jsonl; agentrl/synth/"
        "critic_pairs.py): verifiable-reward-labelled data to warm-start the policy-as-critic in SFT.",
    )
