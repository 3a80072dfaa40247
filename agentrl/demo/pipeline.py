"""The main job: synth -> tokenizer -> random-init k2-tiny -> SFT -> (eval, RL, eval) -> report.

Each stage is a small function over a shared `DemoContext`; the list of stages is the pipeline. A rich progress
display shows the current stage and an ETA from the stages' expected durations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrl.config import load_config, write_run_metadata
from agentrl.demo.config import DemoConfig, quick_overrides
from agentrl.errors import AgentRLError


@dataclass
class DemoContext:
    cfg: DemoConfig
    run_dir: Path
    results: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    engine: Any = None
    tokenizer: Any = None


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[DemoContext], None]
    expected_s: float  # for the ETA display only


def stage_synth(ctx: DemoContext) -> None:
    from agentrl.synth.pipeline import run_synth

    cfg = ctx.cfg.synth.model_copy(update={"out_dir": str(ctx.run_dir / "synth"), "seed": ctx.cfg.seed})
    stats = run_synth(cfg, echo=None)
    ctx.results["synth"] = {k: v for k, v in stats.items() if not isinstance(v, (dict, list))}


def stage_init(ctx: DemoContext) -> None:
    from agentrl.demo import vocab
    from environments.tool_world.domains import load_domains
    from model.chat_format import render_messages
    from model.checkpoint import build_model, save_checkpoint
    from model.tokenizer import train_tokenizer

    path = ctx.run_dir / "synth" / "trajectories.jsonl"
    texts = []
    with path.open() as fh:
        for line in fh:
            rec = json.loads(line)
            texts.append(render_messages(rec["messages"], tools=rec.get("tools")))
            if len(texts) >= ctx.cfg.tokenizer.max_texts:
                break
    tcfg = ctx.cfg.tokenizer
    needs_domains = tcfg.entities or tcfg.key_tokens
    domains = load_domains([ctx.run_dir / "synth" / "domains"]) if needs_domains else []
    pools = vocab.entity_pools(domains) if tcfg.entities else {}
    keys = vocab.key_tokens(domains) if tcfg.key_tokens else {}
    tokenizer = train_tokenizer(
        texts,
        vocab_size=tcfg.vocab_size,
        isolate_spaces=tcfg.isolate_spaces,
        entities=sorted({v for pool in pools.values() for v in pool}),
        whole_numbers=tcfg.whole_numbers,
        keys=sorted(keys),
    )
    model = build_model(
        ctx.cfg.preset,
        tokenizer,
        seed=ctx.cfg.seed,
        tie_word_embeddings=ctx.cfg.tie_embeddings,
        **ctx.cfg.model_overrides,
    )
    kinds = {}
    if ctx.cfg.entity_kind_init > 0 and pools:
        from model.embedding_init import share_kind_directions

        if ctx.cfg.entity_kind_keys:
            pools = vocab.with_kind_words(pools, domains)
        if keys:
            pools = vocab.with_key_tokens(pools, keys)
        kinds = share_kind_directions(model, tokenizer, pools, ctx.cfg.entity_kind_init, ctx.cfg.seed)
    out = save_checkpoint(model, tokenizer, ctx.run_dir / "init")
    params = sum(p.numel() for p in model.parameters())
    ctx.results["init"] = {
        "checkpoint": str(out),
        "vocab": len(tokenizer),
        "params": params,
        "entity_kinds": kinds,
    }


def stage_sft_short(ctx: DemoContext) -> None:
    """Sequence-length warm-up: SFT on each assistant turn's own context (agentrl/train/turn_windows.py), so the
    from-scratch policy learns to copy values into arguments before it sees full transcripts."""
    if ctx.cfg.sft_short.max_steps == 0:
        return
    ctx.results["sft_short"] = _run_sft(ctx, ctx.cfg.sft_short, ctx.run_dir / "init", "sft_short")


def stage_sft(ctx: DemoContext) -> None:
    start = ctx.results["sft_short"]["checkpoint"] if "sft_short" in ctx.results else ctx.run_dir / "init"
    phase = ctx.cfg.sft
    # the critic initialised in SFT, next to the policy
    if ctx.cfg.critic.enabled and ctx.cfg.critic.sft_pairs:
        phase = phase.model_copy(update={"critic_data": str(_critic_sft_records(ctx))})
    ctx.results["sft"] = _run_sft(ctx, phase, start, "sft")


def stage_sft_critic(ctx: DemoContext) -> None:
    """Critic warm-start (K2 §3.2.2: the critic ability is initialised in SFT): a short phase on synth critic pairs
    (a demonstration against the same task replayed with one mistake, labelled by tool_world's verifiable reward,
    agentrl/synth/critic_pairs.py), in both orders, in exactly the prompt format of the RL-time critic, with the
    loss on the verdict only; some transcripts ride along so the policy does not drift. The held-out critic
    accuracy is still measured on on-policy RL pairs only."""
    phase = ctx.cfg.sft_critic
    if phase.max_steps == 0 or not ctx.cfg.critic.enabled:
        return
    data = _critic_sft_records(ctx)
    phase = phase.model_copy(update={"critic_data": str(data)})
    ctx.results["sft_critic"] = _run_sft(ctx, phase, ctx.results["sft"]["checkpoint"], "sft_critic")


def stage_critic_warmup(ctx: DemoContext) -> None:
    """The policy learns to judge synth critic pairs before RL (agentrl/train/critic_warmup.py: the letter-margin
    loss, PTX on the SFT transcripts alongside); eval after SFT and RL then start from this checkpoint."""
    cfg = ctx.cfg.critic_warmup
    if cfg.steps == 0 or not ctx.cfg.critic.enabled:
        return
    from agentrl.demo.stages import ptx_records
    from agentrl.train.critic_warmup import run_critic_warmup

    examples = _synth_critic_examples(ctx, "critic_warmup")
    transcripts = ptx_records(ctx.run_dir / "synth" / "trajectories.jsonl", ctx.cfg.ptx_records)
    start = sft_checkpoint(ctx.results)
    out = ctx.run_dir / "critic_warmup"
    ctx.results["critic_warmup"] = run_critic_warmup(
        start, examples, transcripts, cfg, out, seed=ctx.cfg.seed
    )


def _synth_critic_examples(ctx: DemoContext, user: str) -> list[Any]:
    """synth/critic_pairs.jsonl -> critic examples (both orders of every pair) in the RL critic's prompt."""
    from agentrl.rewards.critic_data import examples_from_pairs
    from agentrl.rewards.rubrics import load_rubrics
    from agentrl.rewards.stack import RewardsConfig

    source = ctx.run_dir / "synth" / "critic_pairs.jsonl"
    if not source.is_file():
        raise AgentRLError(f"{user} needs synth critic pairs ({source} is missing): set synth.critic_pairs")
    pairs = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    rubrics = load_rubrics(RewardsConfig().rubric_paths)  # the rubric set the RL reward stack loads
    return examples_from_pairs(pairs, rubrics, ctx.cfg.critic.prompt)


def _critic_warm(ctx: DemoContext) -> list[Any]:
    """The synth critic examples that start RL's refinement buffer (`critic.refine_synth_pairs`)."""
    wanted = ctx.cfg.critic.refine_synth_pairs
    if wanted == 0 or not ctx.cfg.critic.enabled:
        return []
    return _synth_critic_examples(ctx, "critic.refine_synth_pairs")[:wanted]


def _critic_sft_records(ctx: DemoContext) -> Path:
    """synth/critic_pairs.jsonl -> critic SFT records (both orders of every pair), the RL critic's prompt."""
    examples = _synth_critic_examples(ctx, "sft_critic")
    out = ctx.run_dir / "sft_critic_data.jsonl"
    out.write_text("".join(json.dumps(ex.sft_record()) + "\n" for ex in examples))
    return out


def sft_checkpoint(results: dict[str, Any]) -> str:
    """The policy SFT hands to eval and RL: after the critic warm-up or warm-start when one ran."""
    return str(results.get("critic_warmup", results.get("sft_critic", results["sft"]))["checkpoint"])


def _run_sft(ctx: DemoContext, cfg: Any, init: str | Path, name: str) -> dict[str, Any]:
    from agentrl.train.sft import run_sft

    cfg = cfg.model_copy(
        update={
            "data": str(ctx.run_dir / "synth" / "trajectories.jsonl"),
            "init": str(init),
            "out_dir": str(ctx.run_dir / name),
            "seed": ctx.cfg.seed,
        }
    )
    return run_sft(cfg, progress=False)


def _sync(ctx: DemoContext, checkpoint: str) -> None:
    from model.checkpoint import load_checkpoint
    from model.weights import checkpoint_named_tensors

    model, _ = load_checkpoint(checkpoint)
    ctx.results.setdefault("weight_sync", []).append(ctx.engine.load_weights(checkpoint_named_tensors(model)))


def stage_engine(ctx: DemoContext) -> None:
    from transformers import AutoTokenizer

    from agentrl.demo.stages import make_engine

    ctx.engine = make_engine(sft_checkpoint(ctx.results), ctx.cfg.max_model_len, ctx.cfg.seed)
    ctx.tokenizer = AutoTokenizer.from_pretrained(sft_checkpoint(ctx.results))


def _eval(ctx: DemoContext, key: str) -> None:
    from agentrl.demo.stages import load_tasks, run_eval

    tasks = load_tasks(ctx.run_dir / "synth" / "tasks_heldout.jsonl", ctx.cfg.eval_tasks)
    ctx.results[key] = run_eval(ctx.engine, ctx.tokenizer, tasks, ctx.cfg.eval_max_tokens)


def stage_eval_base(ctx: DemoContext) -> None:
    _sync(ctx, ctx.results["init"]["checkpoint"])
    _eval(ctx, "eval_base")


def stage_eval_sft(ctx: DemoContext) -> None:
    _sync(ctx, sft_checkpoint(ctx.results))
    _eval(ctx, "eval_sft")


def stage_rl(ctx: DemoContext) -> None:
    from agentrl.demo.stages import load_tasks, ptx_records, run_rl
    from model.checkpoint import save_checkpoint

    rl_cfg = ctx.cfg.rl.model_copy(update={"run_dir": str(ctx.run_dir / "rl"), "seed": ctx.cfg.seed})
    tasks = load_tasks(ctx.run_dir / "synth" / "tasks_rl.jsonl", ctx.cfg.rl_task_pool)
    if ctx.cfg.rl_partial_credit:
        tasks = [{**t, "partial_credit": ctx.cfg.rl_partial_credit} for t in tasks]
    ptx = (
        ptx_records(ctx.run_dir / "synth" / "trajectories.jsonl", ctx.cfg.ptx_records)
        if rl_cfg.ptx.beta > 0
        else None
    )
    # held-out success during RL (the report's "Held-out evaluation" panel) only when asked: eval_rl covers the end
    heldout = ctx.run_dir / "synth" / "tasks_heldout.jsonl"
    out = run_rl(
        ctx.engine,
        sft_checkpoint(ctx.results),
        tasks,
        rl_cfg,
        eval_tasks=load_tasks(heldout, ctx.cfg.eval_tasks) if rl_cfg.eval_every else None,
        eval_max_tokens=ctx.cfg.eval_max_tokens,
        critic_cfg=ctx.cfg.critic,
        max_model_len=ctx.cfg.max_model_len,
        ptx=ptx,
        critic_warm=_critic_warm(ctx),
    )
    final = save_checkpoint(out["model"], out["tokenizer"], ctx.run_dir / "rl" / "final")
    ctx.results["rl"] = {"steps": out["steps"], "stop_reason": out["stop_reason"], "checkpoint": str(final)}
    # RL's own held-out eval ran on the final weights: eval_rl would repeat it
    if out["final_eval"] is not None:
        ctx.results["eval_rl"] = out["final_eval"]
    if out["critic"] is not None:
        ctx.results["critic"] = _critic_before_after(ctx, out)


def _critic_before_after(ctx: DemoContext, out: dict[str, Any]) -> dict[str, Any]:
    """Critic pairwise accuracy on the same held-out verifiable pairs, with the SFT weights (before refinement)
    and the RL weights (after); the engine ends up holding the RL weights again. "Before" is the policy RL starts
    from, i.e. after the critic warm-start when it ran."""
    from agentrl.rewards.engine_critic import accuracy_by_rule
    from model.weights import checkpoint_named_tensors

    held = out["reward_fn"].critic_heldout
    if not held:
        return {"heldout_pairs": 0}
    critic = out["critic"]
    batch = [e.messages for e in held]
    margins_end = critic.margins(batch)
    end = accuracy_by_rule(critic, held, margins_end)
    _sync(ctx, sft_checkpoint(ctx.results))
    margins_start = critic.margins(batch)
    start = accuracy_by_rule(critic, held, margins_start)
    ctx.engine.load_weights(checkpoint_named_tensors(out["model"]))
    # the pairs and both critics' margins, so what the critic gets wrong can be read afterwards
    with (ctx.run_dir / "rl" / "critic_heldout.jsonl").open("w") as fh:
        for ex, m0, m1 in zip(held, margins_start, margins_end, strict=True):
            fh.write(json.dumps({**ex.model_dump(), "margin_start": m0, "margin_end": m1}) + "\n")
    rule = critic.verdict
    return {
        "verdict": rule,
        "heldout_examples": end[rule].n,
        "accuracy_start": start[rule].accuracy,
        "accuracy_end": end[rule].accuracy,
        "pair_accuracy_start": start[rule].pair_accuracy,
        "pair_accuracy_end": end[rule].pair_accuracy,
        # the position prior's share, next to the configured rule
        "forced_accuracy_start": start["forced"].accuracy,
        "forced_accuracy_end": end["forced"].accuracy,
        **critic.metrics(),
    }


def stage_eval_rl(ctx: DemoContext) -> None:
    if "eval_rl" not in ctx.results:
        _eval(ctx, "eval_rl")  # the engine already holds the RL weights (synced after every update)


STAGES: list[Stage] = [
    Stage("synth", stage_synth, 60),
    Stage("tokenizer+init", stage_init, 30),
    Stage("sft short", stage_sft_short, 300),
    Stage("sft", stage_sft, 300),
    Stage("sft critic", stage_sft_critic, 60),
    Stage("critic warmup", stage_critic_warmup, 120),
    Stage("engine", stage_engine, 30),
    Stage("eval base", stage_eval_base, 40),
    Stage("eval sft", stage_eval_sft, 40),
    Stage("rl", stage_rl, 400),
    Stage("eval rl", stage_eval_rl, 40),
]


def _max_attention_logit(run_dir: Path) -> float | None:
    """The largest per-head max attention logit MuonClip saw during RL (what QK-Clip caps at tau)."""
    path = run_dir / "rl" / "metrics.jsonl"
    if not path.is_file():
        return None
    values = []
    with path.open() as fh:
        for line in fh:
            value = json.loads(line).get("qk_clip/max_logit")
            if isinstance(value, int | float):
                values.append(float(value))
    return max(values) if values else None


def _summary(ctx: DemoContext, wall_s: float) -> dict[str, Any]:
    r = ctx.results
    syncs = r.get("weight_sync", [])
    return {
        "stages": dict(ctx.timings),
        "synth_accepted": r.get("synth", {}).get("accepted"),
        "sft_train_loss": r.get("sft", {}).get("train_loss"),
        "success_base": r.get("eval_base", {}).get("success"),
        "success_sft": r.get("eval_sft", {}).get("success"),
        "success_rl": r.get("eval_rl", {}).get("success"),
        "tool_call_validity_sft": r.get("eval_sft", {}).get("tool_call_validity"),
        "tool_call_validity_rl": r.get("eval_rl", {}).get("tool_call_validity"),
        "critic_accuracy_start": r.get("critic", {}).get("accuracy_start"),
        "critic_accuracy_end": r.get("critic", {}).get("accuracy_end"),
        "max_attention_logit": _max_attention_logit(ctx.run_dir),
        "weight_sync_s": syncs[-1]["seconds"] if syncs else None,
        "wall_s": round(wall_s, 1),
        "report_path": r.get("report_path"),
        "run_dir": str(ctx.run_dir),
    }


def run_demo(config_files: list[str], overrides: list[str], quick: bool = False) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    cfg = load_config(DemoConfig, config_files, (quick_overrides() if quick else []) + list(overrides))
    run_dir = Path(cfg.run_dir + ("-quick" if quick else ""))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_metadata(run_dir, cfg)
    ctx = DemoContext(cfg=cfg, run_dir=run_dir)
    start = time.time()
    total = sum(s.expected_s for s in STAGES)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("demo", total=total)
        for stage in STAGES:
            progress.update(task, description=f"demo: {stage.name}")
            t0 = time.time()
            stage.run(ctx)
            ctx.timings[stage.name] = round(time.time() - t0, 1)
            progress.advance(task, stage.expected_s)
    from agentrl.demo.report import build_demo_report

    ctx.results["report_path"] = str(run_dir / "report" / "index.html")
    summary = _summary(ctx, time.time() - start)
    build_demo_report(run_dir, summary, ctx.results)
    (run_dir / "summary.json").write_text(json.dumps({"summary": summary, "results": ctx.results}, indent=2))
    return summary
