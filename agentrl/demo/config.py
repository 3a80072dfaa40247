"""`DemoConfig`: one typed tree for the main job; each stage keeps its own config section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentrl.rewards.critic_prompt import CriticPromptConfig
from agentrl.rewards.engine_critic import VerdictRule
from agentrl.synth.config import SynthConfig
from agentrl.train.critic_warmup import CriticWarmupConfig
from agentrl.train.rl_config import RLConfig
from agentrl.train.sft import SFTStageConfig


def _demo_rl() -> RLConfig:
    return RLConfig.model_validate(
        {
            "steps": 30,
            "tasks_per_step": 8,
            "samples_per_task": 4,
            # k2-tiny's samples at T = 1 are mostly invalid calls (valid share 0.16 vs 0.99 greedy), so the decay
            # runs lower than K2's; Muon lr 1e-3 taught the policy to stop early and lost multi-step tasks
            # (held-out 0.32 -> 0.24), 2e-4 kept it (0.33). BENCHMARKS.md, "Fourth session".
            "temperature": {"kind": "linear", "start": 0.7, "end": 0.3, "steps": 30},
            "budget": {"default": 768, "penalty": -0.5},
            # The SFT demonstrations skip lookups about half the time (`synth.agent.shortcut_rate`): Muon lr 1e-3 flips
            # that decision in 30 steps (level 3: 34/36 skip -> 7/36), 2e-4 barely moves the policy; PTX on the
            # SFT records holds the copying skill lr 1e-3 alone erodes. BENCHMARKS.md, "Fifth session".
            "optimizer": {"name": "muonclip", "muonclip": {"lr": 1e-3, "weight_decay": 0.0}},
            "ptx": {"beta": 0.5, "batch_size": 4},
            "checkpoint": {"every": 10},
            "metrics": {"progress": False},
            # one group per micro-batch, each run at its own width (learner.py): the step's longest trajectory no
            # longer sets every row's width, which cut the update 7.2 -> ~6 s a step (BENCHMARKS.md, "Eighth session")
            "groups_per_microbatch": 1,
            # held-out success every 10 steps, for the report (~10 s each); it peaked at step 15 in a 45-step run
            "eval_every": 10,
        }
    )


class TokenizerStageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    vocab_size: int = Field(2048, ge=300)
    """Byte-level BPE vocabulary, trained on the synthetic train split (rendered in the K2 chat format)."""
    max_texts: int = Field(3000, ge=10)
    """Train the tokenizer on at most this many records."""
    isolate_spaces: bool = False
    """Spaces as their own tokens, so names tokenize the same in prose and in JSON arguments (model/tokenizer.py).
    The demo turns it on."""
    entities: bool = False
    """One token per value of the closed entity pools (needs `synth.tasks.values=closed`; model/tokenizer.py).
    The demo turns it on."""
    whole_numbers: int = Field(0, ge=0)
    """The integers 0..N-1 are one token each."""
    key_tokens: bool = False
    """Every JSON argument key of the synth domains with its punctuation (`"city":"`) is one token, which joins
    its value's kind under `entity_kind_init` (model/tokenizer.py). The demo turns it on: the token before a copied
    value then says which value it wants (a name's copy after `"owner":"` 0.72 -> 1.00 teacher-forced, held-out
    success after RL 0.38 -> 0.43 on the same data; BENCHMARKS.md, "Tenth session")."""


class DemoCriticConfig(BaseModel):
    """K2's self-critique rubric reward and closed-loop critic refinement, with the policy as critic."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    reward_weight: float = Field(0.1, ge=0)
    """Self-critique share next to the environment's verifiable reward (weight 1) on tool-use tasks."""
    refine_beta: float = Field(1.0, ge=0)
    """Weight of the critic-refinement loss (verdicts known from verifiable rewards) in the RL update. With the
    `nll` loss 0.5 swamped the RL update (~10 nats at first, ~30x the policy gradient) and the default was 0.05;
    the letter-margin loss starts at log 2, and at 1.0 RL gained as much as without it (BENCHMARKS.md, "Sixteenth
    session")."""
    refine_batch_size: int = Field(32, ge=1)
    """Critic examples in each RL update's refinement batch. 16 (was 8) since the eighteenth session: with
    `max_pairs_per_group` 4 the held-out critic ended at 0.84 instead of 0.77 from the same SFT checkpoint, at the
    same RL success and RL wall time. 32 since the twenty-first session: from one SFT checkpoint, the critic ended
    at 0.88 instead of 0.72 at the same RL success (0.57), for RL steps ~40% longer (BENCHMARKS.md)."""
    buffer_size: int = Field(512, ge=1)
    max_pairs_per_group: int = Field(4, ge=1)
    """Critic-refinement pairs built per verifiable group (pairs with a known better sample); the self-critique
    reward still compares every pair. 4 since the eighteenth session (2 from the sixth: with the old `nll` loss,
    4 pairs had not lifted the critic and the refinement batches cost RL time). With the letter-margin loss the
    extra on-policy pairs feed refinement, and the held-out set fills its 64 examples by step ~20 instead of
    ending at ~50, so the end accuracy is read on more pairs."""
    verdict: VerdictRule = "swap_debiased"
    """How the policy-as-critic decides a pair (agentrl/rewards/engine_critic.py): `swap_debiased` adds the A-vs-B
    log-prob margins of both orders, so a position prior cancels; `forced` takes one order's argmax letter (the
    sixth session's rule, which sat at chance: 0.54 -> 0.50, the tiny critic picking one letter throughout)."""
    sft_pairs: bool = False
    """Mix the synth critic pairs (`synth.critic_pairs`: both orders, the RL critic's prompt, loss on the verdict)
    into the `sft` phase, K2's critic initialised in SFT; use it with `sft.loss_agg: record_mean`, under which a
    verdict weighs as much as a transcript. Off: on `demo13`'s data, 2,000 records in 200 steps lifted the SFT critic
    on on-policy pairs 0.41 -> 0.59 but cut held-out success 0.31 -> 0.21 (BENCHMARKS.md, "Eleventh session")."""
    refine_loss: Literal["nll", "letter_margin"] = "letter_margin"
    """Critic-refinement loss (agentrl/train/aux_loss.py): `letter_margin`, cross-entropy over the two letters at
    the letter's position (the A-vs-B margin the critic decides by), or `nll` on the whole verdict turn, which
    first spends its gradient on the verdict format (the default until the sixteenth session)."""
    refine_solo_steps: int = Field(0, ge=0)
    """Optimizer steps on the refinement loss alone after each RL update (`CriticRefinementLoss.solo_steps`), on
    top of its batch inside the RL step."""
    refine_synth_pairs: int = Field(0, ge=0)
    """Critic examples from the synth critic pairs (`synth.critic_pairs`, both orders) that the refinement buffer
    starts with, so closed-loop refinement has verdicts to learn from at step 1 and never displaces SFT data."""
    holdout_fraction: float = Field(0.25, ge=0, le=1)
    max_heldout: int = Field(64, ge=1)
    eval_every: int = Field(5, ge=1)
    prompt: CriticPromptConfig = CriticPromptConfig(
        instructions="brief", rubric_detail="names", max_conversation_chars=300, max_response_chars=500
    )
    """Compact enough for k2-tiny's 1024-token context; longer prompts abstain and are counted."""


class DemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    run_dir: str = "runs/demo"
    """Everything the demo writes goes here: config, data, checkpoints, metrics, report."""
    seed: int = 0
    preset: str = "k2-tiny"
    model_overrides: dict[str, int | float] = {}
    """Fields of the preset replaced for this run (`model_overrides.hidden_size=192`); only keys the preset
    itself sets are accepted (model/presets.py), so a typo is an error, not a silently ignored config field."""
    tie_embeddings: bool = True
    """lm_head shares the input embedding (k2-tiny only; K2 unties them). With tied embeddings the copy circuit
    that puts a value from the context into an argument is close to an identity map, and it forms ~10x sooner in
    the short-context SFT phase (copy accuracy 0.34 vs 0.02 after 200 steps, BENCHMARKS.md)."""
    entity_kind_init: float = Field(0.5, ge=0, lt=1)
    """Share w of each entity token's initial embedding with the other values of its pool (model/embedding_init.py;
    needs `tokenizer.entities`), so a value's kind is readable from step 0 and the copy heads form sooner: after
    the 300 turn-window steps, copy accuracy 0.62 vs 0.45 (one candidate in context) and 0.38 vs 0.24 (several);
    held-out success after SFT 0.33 and 0.36 in two runs vs 0.28 at seed 0, but 0.12 vs 0.13 at seed 1 (BENCHMARKS.md,
    "Eighth session"). 0 turns it off."""
    entity_kind_keys: bool = True
    """Also give each kind's direction to the words that name it in tool calls: a column's name joins its pool's
    kind (`court` with the places, `patient` with the names) and each enum column forms a kind of its name and
    values (`tool_world.values.kind_words`). An argument's key then carries the kind its value has, so one
    "same kind" attention pattern serves every key. On by default since the tenth session: with `tokenizer.key_tokens`
    RL reached 0.50 from 0.31 (+0.19) instead of 0.43 from 0.32 with key tokens alone (BENCHMARKS.md)."""
    synth: SynthConfig = SynthConfig.model_validate(
        {
            "target": 5000,
            "tasks": {"values": "closed"},
            "agent": {"shortcut_rate": 0.45},
            # An outcome judge over ungrounded episodes keeps the shortcut demonstrations, questions included; the
            # task files, eval and RL still ground required outputs, so a guessed answer earns nothing there.
            "judge": {"require_tool_pattern": False, "require_grounded_outputs": False},
        }
    )
    """Closed value pools (shared by all splits, one token each): a from-scratch 4M-parameter policy cannot copy
    multi-piece names in the budget. Deviation from `agentrl synth`'s default, whose held-out tasks use unseen
    values. The demonstrator skips the lookup in 45% of the episodes that have one, acting on world state it was
    never shown, and an outcome judge keeps those: the SFT policy imitates the skip, guesses the id and fails, and
    RL's verifiable reward teaches it to look up (the room RL has; BENCHMARKS.md, "Fifth session"). The rate is
    a steep lever: at seed 0, 0.5 gave SFT 0.23 -> RL 0.41, 0.45 gave 0.32 -> 0.57 (0.30 -> 0.45 at seed 1), and
    0.4 gave 0.59 -> 0.64, a lookup habit the SFT policy already has and RL little left to add ("Twenty-second
    session")."""
    tokenizer: TokenizerStageConfig = TokenizerStageConfig(
        isolate_spaces=True, entities=True, whole_numbers=100, key_tokens=True
    )
    sft_short: SFTStageConfig = SFTStageConfig(
        context="turn_windows",
        loss_on="all",
        max_steps=450,
        batch_size=16,
        lr=1e-2,
        lr_scheduler="constant_with_warmup",
    )
    """Short-context warm-up before `sft` (max_steps=0 skips it): each assistant turn with only its own context,
    language-model loss on every token, constant lr. Copying values into arguments forms here (BENCHMARKS.md).
    450 steps (300 until the twenty-first session): on one data draw the copy had not formed by step 300 (loss
    flat at 0.47 instead of falling below 0.41) and SFT ended at 0.02 with 76 of 100 episodes truncated; 450 steps
    on the same data gave 0.35 (BENCHMARKS.md, "Twenty-first session")."""
    sft: SFTStageConfig = SFTStageConfig(max_steps=200, batch_size=16, lr=6e-3)
    """Full transcripts (tool declarations, system prompt), starting from `sft_short`'s weights."""
    sft_critic: SFTStageConfig = SFTStageConfig(
        max_steps=0,
        batch_size=8,
        lr=6e-3,
        lr_scheduler="constant_with_warmup",
        max_records=1000,
    )
    """Critic warm-start after `sft`, off by default (max_steps=0; `critic.enabled=false` skips it too). It needs
    `synth.critic_pairs > 0`: those pairs (both orders, loss on the verdict only), mixed with `max_records`
    transcripts so the policy does not drift. K2 initialises the critic ability in SFT. Off because, measured in
    BENCHMARKS.md ("Fifth session"), 50 mixed steps left the critic at 0.59 on on-policy pairs (0.50 before) and
    cut held-out success 0.31 -> 0.14."""
    critic_warmup: CriticWarmupConfig = CriticWarmupConfig()
    """The policy-as-critic trained on synth critic pairs after SFT, before RL (agentrl/train/critic_warmup.py;
    needs `synth.critic_pairs`; steps=0 skips it), with the letter-margin loss and PTX on the SFT transcripts."""
    eval_tasks: int = Field(100, ge=1)
    """Held-out tasks per evaluation (base, after SFT, after RL)."""
    eval_max_tokens: int = Field(384, ge=16)
    """Generated-token budget per evaluation episode."""
    rl: RLConfig = Field(default_factory=_demo_rl)
    """The RL stage (K2 objective, MuonClip, temperature decay, budget control) on tool_world's RL tasks."""
    critic: DemoCriticConfig = DemoCriticConfig()
    rl_task_pool: int = Field(400, ge=1)
    """RL prompts drawn from the synth RL split."""
    rl_partial_credit: float = Field(0.0, ge=0, lt=1)
    """tool_world's partial credit on the RL tasks (`TaskSpec.partial_credit`): a failed episode earns this times
    its share of checkpoints reached (fetched outputs, final state). Success, and every eval, stay binary."""
    ptx_records: int = Field(2000, ge=1)
    """SFT records (the synth trajectories, shortcuts included) in the RL stage's PTX set when `rl.ptx.beta > 0`."""
    max_model_len: int = Field(1024, ge=128)
    """vLLM context length."""


def quick_overrides() -> list[str]:
    """`--quick`: every stage, minutes not tens of minutes (make test runs it)."""
    return [
        "synth.target=300",
        "synth.tasks.heldout=40",
        "synth.tasks.rl=80",
        "tokenizer.max_texts=300",
        "sft_short.max_steps=10",
        "sft_short.batch_size=8",
        "sft.max_steps=30",
        "synth.critic_pairs=40",
        "sft_critic.max_steps=4",
        "critic.sft_pairs=true",  # off in the full demo; --quick keeps the path and record_mean exercised
        "sft.loss_agg=record_mean",
        "sft_critic.max_records=40",
        "sft.batch_size=8",
        "eval_tasks=16",
        "rl.steps=2",
        "rl.tasks_per_step=2",
        "rl.samples_per_task=2",
        "rl.temperature.steps=2",
        "rl.checkpoint.every=1",
        "rl.eval_every=2",  # the RL loop's own final eval stands in for eval_rl, as in the full demo
        "rl_task_pool=16",
    ]
