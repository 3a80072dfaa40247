"""`run_synth(config) -> stats`: K2's three-stage tool-use data pipeline (§3.1), end to end.

1. Tool repository: tool_world's hand-written domains, extra domain files, domains evolved from categories,
   and real tool specs imported from function files and MCP servers.
2. Agents and tasks: agents (system prompt + sampled toolset) per domain; tasks from simple to multi-step with
   rubrics; held-out (unseen entity values) and RL task lists.
3. Trajectories: agent + user simulator + tool_world, judged against the rubric; only passes are kept
   (rejection sampling), then exact and near duplicates are removed, until `target` trajectories are accepted.

Outputs in `out_dir`: trajectories.jsonl (OpenAI `messages` + `tools`, with provenance), tasks_heldout.jsonl,
tasks_rl.jsonl, domains/*.json (every domain with its templates, loadable by tool_world), rubrics/tool_world.yaml
(the `rubrics/tasks/` schema) and stats.json.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from agentrl import __version__
from agentrl.errors import AgentRLError
from agentrl.synth.config import ROLES, SynthConfig
from agentrl.synth.critic_pairs import critic_pair
from agentrl.synth.dedup import Deduper
from agentrl.synth.episodes import Episode, ProceduralAgent, run_episode
from agentrl.synth.evolve import CATEGORIES, evolve_domains
from agentrl.synth.finder_result import fetch_after_find, narrow_finders
from agentrl.synth.importers import import_function_file, import_mcp_server, imported_domain
from agentrl.synth.judge import judge_episode
from agentrl.synth.reply_style import quoted_reply
from agentrl.synth.roles import EndpointAgent, EndpointRoles
from agentrl.synth.task_writer import write_templates
from agentrl.synth.tasks import TaskFactory, eval_task_lists, rubric_for
from environments.tool_world.domains import DomainError, builtin_domains, load_domains
from environments.tool_world.spec import DomainSpec, TemplateSpec
from environments.tool_world.taskgen import TemplateError, instantiate

GENERATOR = f"agentrl-synth/{__version__}"


class SynthError(AgentRLError):
    """The synth run cannot proceed (no usable domains, bad inputs)."""


def build_repository(
    cfg: SynthConfig, roles: EndpointRoles | None
) -> tuple[list[tuple[DomainSpec, list[TemplateSpec]]], dict[str, Any]]:
    """Stage 1 (+ the procedural task writer): every domain with the templates that instantiate."""
    t = cfg.tools
    rng = random.Random(f"{cfg.seed}:tools")
    domains: list[DomainSpec] = list(builtin_domains()) if t.builtin else []
    try:
        domains += load_domains(t.domain_files) if t.domain_files else []
    except DomainError as exc:
        raise SynthError(str(exc)) from None
    if cfg.backend.kind("tool_designer") == "endpoint" and roles is not None:
        cats = rng.sample(sorted(CATEGORIES), k=min(t.evolve.categories, len(CATEGORIES)))
        for cat in cats:
            for i in range(t.evolve.domains_per_category):
                d = roles.design_domain(cat, f"{cat.replace(' ', '_')}_llm{i}")
                domains += [d] if d is not None else []
    else:
        domains += evolve_domains(t.evolve.categories, t.evolve.domains_per_category, rng)
    for path in t.function_files:
        tools = import_function_file(path)
        domains.append(imported_domain(f"fn_{Path(path).stem}", tools, f"Tools imported from {path}."))
    for server in t.mcp_servers:
        domains.append(
            imported_domain(f"mcp_{server.name}", import_mcp_server(server), f"MCP server {server.name}.")
        )
    names = [d.name for d in domains]
    if len(set(names)) != len(names):
        raise SynthError(f"duplicate domain names: {sorted({n for n in names if names.count(n) > 1})}")
    out, dropped = [], 0
    narrow = t.finder_result == "key"
    for d in map(narrow_finders, domains) if narrow else domains:
        ok = []
        for tpl in write_templates(d):
            tpl = fetch_after_find(d, tpl) if narrow else tpl
            if tpl is None:
                dropped += 1
                continue
            tpl = quoted_reply(d, tpl) if cfg.tasks.reply_style == "quoted" else tpl
            try:  # keep only templates that instantiate on both partitions
                for split in ("train", "heldout"):
                    instantiate(d, tpl, random.Random(0), split=split, task_id="probe")
                ok.append(tpl)
            except (TemplateError, RuntimeError, KeyError):
                dropped += 1
        out.append((d, ok))
    if not any(tpls for _, tpls in out):
        raise SynthError("no usable task templates in any domain; check tools.* in the config")
    sources = Counter(tool.source.split(":")[0] for d, _ in out for tool in d.tools)
    info = {
        "domains": len(out),
        "domain_names": [d.name for d, _ in out],
        "categories": sorted({d.category for d, _ in out}),
        "tools": sum(len(d.tools) for d, _ in out),
        "tools_by_source": dict(sources),
        "templates": sum(len(tp) for _, tp in out),
        "templates_dropped": dropped,
    }
    return out, info


def _record(
    ep: Episode, verdict: dict[str, Any], index: int, cfg: SynthConfig, episode_seed: int
) -> dict[str, Any]:
    task = ep.task
    return {
        "id": f"synth-{cfg.seed}-{index:06d}",
        "messages": ep.messages,
        "tools": ep.tools,
        "task_id": task.id,
        "domain": task.domain,
        "template": task.template,
        "level": task.level,
        "split": "train",
        "num_turns": ep.turns,
        "num_tool_calls": len(ep.session.calls),
        "provenance": {
            "generator": GENERATOR,
            "seed": cfg.seed,
            "episode_seed": episode_seed,
            "backend": {r: cfg.backend.kind(r) for r in ROLES},
            "judge": verdict,
            "rubric_id": f"task.tool_world.{task.domain}.{task.template}",
            "reward": ep.reward,
            "mistakes": ep.mistakes,
        },
    }


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    n = 0
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
            n += 1
    return n


def run_synth(
    config: SynthConfig | dict[str, Any], echo: Callable[[str], None] | None = print
) -> dict[str, Any]:
    """Run all three stages and write the outputs; returns the stats dict (also written as stats.json)."""
    cfg = config if isinstance(config, SynthConfig) else SynthConfig.model_validate(config)
    t0 = time.perf_counter()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    uses_endpoint = any(cfg.backend.kind(r) == "endpoint" for r in ROLES)
    roles = EndpointRoles(cfg.backend) if uses_endpoint else None
    if roles is not None:
        roles.probe()
    domains, repo = build_repository(cfg, roles)
    factory = TaskFactory(domains, cfg.tools, cfg.tasks, cfg.seed)
    user = roles.user if roles is not None and cfg.backend.kind("user") == "endpoint" else None
    rubrics = {f"{d.name}.{tp.id}": rubric_for(d, tp) for d, tpls in domains for tp in tpls}

    def play(item: tuple[int, Any]) -> tuple[int, Episode, dict[str, Any], int]:
        i, task = item
        if roles is not None and cfg.backend.kind("task_writer") == "endpoint":
            task = roles.rewrite_user(task)
        endpoint_agent = roles is not None and cfg.backend.kind("agent") == "endpoint"
        policy = EndpointAgent(roles) if endpoint_agent else ProceduralAgent(cfg.agent)  # per-episode state
        seed = cfg.seed * 1_000_003 + i
        if not cfg.judge.require_grounded_outputs:
            task = task.model_copy(update={"grounded_outputs": False})
        ep = run_episode(task, policy, seed, user)
        verdict = judge_episode(ep, require_tool_pattern=cfg.judge.require_tool_pattern)
        if roles is not None and cfg.backend.kind("judge") == "endpoint":
            verdict = roles.judge(ep, rubrics[f"{task.domain}.{task.template}"], verdict)
        return i, ep, verdict.as_dict(), seed

    dedup = Deduper(
        near=cfg.dedup.near, threshold=cfg.dedup.threshold, num_perm=cfg.dedup.num_perm, bands=cfg.dedup.bands
    )
    rng = random.Random(f"{cfg.seed}:train")
    kept: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    tried: Counter = Counter()
    passed: Counter = Counter()
    by_level: dict[int, Counter] = defaultdict(Counter)
    reasons: Counter = Counter()
    max_attempts = math.ceil(cfg.target * cfg.max_attempts_factor)
    played = 0
    pool = ThreadPoolExecutor(cfg.backend.endpoint.max_concurrency) if uses_endpoint else None
    try:
        while len(kept) < cfg.target and played < max_attempts:
            n = min(max_attempts - played, max(16, math.ceil((cfg.target - len(kept)) * 1.25)))
            # lazy: tasks are drawn in index order either way, so stopping early keeps runs reproducible
            start = played  # the generator runs while `played` grows
            batch = (
                (start + j, factory.make("train", start + j, cfg.tasks.train_level_weights, rng))
                for j in range(n)
            )
            results = pool.map(play, batch) if pool is not None else map(play, batch)
            for i, ep, verdict, seed in results:
                played += 1
                tried[ep.task.domain] += 1
                by_level[ep.task.level]["tried"] += 1
                if verdict["verdict"] != "pass":
                    reasons.update(
                        r.removesuffix(" failed") for r in verdict["reasons"] if r.endswith(" failed")
                    )
                    continue
                passed[ep.task.domain] += 1
                by_level[ep.task.level]["passed"] += 1
                rec = _record(ep, verdict, i, cfg, seed)
                if dedup.add(rec):
                    kept.append(rec)
                    if len(pairs) < cfg.critic_pairs:  # own RNG: the trajectories stay bit-identical
                        pair = critic_pair(ep, seed, random.Random(f"{cfg.seed}:critic:{i}"))
                        if pair is not None:
                            pairs.append({"id": f"{rec['id']}.critic", **pair})
                if len(kept) >= cfg.target:
                    break
    finally:
        if pool is not None:
            pool.shutdown()
    lists = eval_task_lists(factory, cfg.tasks, cfg.seed)
    files = _write_outputs(out, cfg, kept, lists, domains, rubrics)
    if cfg.critic_pairs:
        files["critic_pairs"] = str(out / "critic_pairs.jsonl")
        write_jsonl(out / "critic_pairs.jsonl", pairs)
    wall = time.perf_counter() - t0
    total_tried = sum(tried.values())
    levels = Counter(r["level"] for r in kept)
    stats = {
        "generator": GENERATOR,
        "seed": cfg.seed,
        "backend": {r: cfg.backend.kind(r) for r in ROLES},
        **repo,
        "agents": sum(len(a) for a in factory.agents.values()),
        "attempts": total_tried,
        "judged_pass": sum(passed.values()),
        "accepted": len(kept),
        "target": cfg.target,
        "target_met": len(kept) >= cfg.target,
        "acceptance_rate": round(sum(passed.values()) / max(1, total_tried), 4),
        "acceptance_by_domain": {d: round(passed[d] / tried[d], 4) for d in sorted(tried)},
        "acceptance_by_level": {
            str(lv): round(c["passed"] / max(1, c["tried"]), 4) for lv, c in sorted(by_level.items())
        },
        "rejections_by_reason": dict(reasons.most_common()),
        **dedup.counts,
        "accepted_by_level": {str(k): levels[k] for k in sorted(levels)},
        "accepted_with_recovered_mistake": sum("recovered" in r["provenance"]["mistakes"] for r in kept),
        "accepted_with_shortcut": sum("shortcut" in r["provenance"]["mistakes"] for r in kept),
        "accepted_with_guess": sum("guessed" in r["provenance"]["mistakes"] for r in kept),
        "critic_pairs": len(pairs),
        "critic_pairs_by_kind": dict(Counter(p["corruption"] for p in pairs).most_common()),
        "turns_mean": round(sum(r["num_turns"] for r in kept) / max(1, len(kept)), 3),
        "tool_calls_mean": round(sum(r["num_tool_calls"] for r in kept) / max(1, len(kept)), 3),
        "chars_mean": round(sum(_chars(r) for r in kept) / max(1, len(kept)), 1),
        "chars_max": max((_chars(r) for r in kept), default=0),
        "heldout_tasks": len(lists["heldout"]),
        "rl_tasks": len(lists["rl"]),
        "endpoint": roles.stats() if roles is not None else None,
        "files": files,
        "wall_s": round(wall, 3),
        "trajectories_per_s": round(len(kept) / wall, 1) if wall > 0 else None,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    if echo is not None:
        echo(format_report(stats))
    return stats


def _chars(rec: dict[str, Any]) -> int:
    """Rendered size of an episode (tool declarations + turns), a proxy for its token count."""
    return len(json.dumps(rec["tools"], separators=(",", ":"))) + sum(
        len(m.get("content") or "")
        + sum(len(c["function"]["arguments"]) + len(c["id"]) for c in m.get("tool_calls") or [])
        for m in rec["messages"]
    )


def _write_outputs(out: Path, cfg: SynthConfig, kept: list[dict[str, Any]], lists: dict[str, list[dict[str, Any]]],
                   domains: list[tuple[DomainSpec, list[TemplateSpec]]], rubrics: dict[str, dict[str, Any]]) -> dict[str, str]:  # fmt: skip
    files = {
        "trajectories": out / "trajectories.jsonl",
        "heldout": out / "tasks_heldout.jsonl",
        "rl": out / "tasks_rl.jsonl",
        "domains": out / "domains",
        "rubrics": out / "rubrics" / "tool_world.yaml",
    }
    write_jsonl(files["trajectories"], kept)
    write_jsonl(files["heldout"], lists["heldout"])
    write_jsonl(files["rl"], lists["rl"])
    files["domains"].mkdir(exist_ok=True)
    for stale in files["domains"].glob("*.json"):  # a rerun into the same out_dir must not leave old domains
        stale.unlink()
    for d, tpls in domains:
        spec = d.model_copy(update={"templates": tpls}).model_dump(mode="json", exclude_defaults=True)
        (files["domains"] / f"{d.name}.json").write_text(json.dumps({"name": d.name, **spec}, indent=1))
    if cfg.write_rubrics:
        files["rubrics"].parent.mkdir(exist_ok=True)
        header = (
            f"# Task rubrics written by {GENERATOR} (seed {cfg.seed}); schema: agentrl/rewards/rubrics.py\n"
        )
        files["rubrics"].write_text(
            header + yaml.safe_dump({"rubrics": list(rubrics.values())}, sort_keys=False, width=110)
        )
    return {k: str(v) for k, v in files.items()}


def format_report(stats: dict[str, Any]) -> str:
    lines = [
        f"synth: {stats['accepted']}/{stats['target']} trajectories accepted in {stats['wall_s']:.1f}s "
        f"({stats['acceptance_rate']:.0%} of {stats['attempts']} attempts passed the judge)",
        f"  repository: {stats['domains']} domains, {stats['tools']} tools {stats['tools_by_source']}, "
        f"{stats['templates']} templates, {stats['agents']} agents",
        f"  accepted by level: {stats['accepted_by_level']}; acceptance by level: {stats['acceptance_by_level']}",
        f"  turns/episode {stats['turns_mean']}, tool calls/episode {stats['tool_calls_mean']}, "
        f"chars mean {stats['chars_mean']} max {stats['chars_max']}",
        f"  duplicates removed: {stats['exact_duplicates']} exact, {stats['near_duplicates']} near; "
        f"rejections: {stats['rejections_by_reason']}",
        "  acceptance by domain: "
        + ", ".join(f"{d} {r:.0%}" for d, r in stats["acceptance_by_domain"].items()),
        f"  held-out tasks {stats['heldout_tasks']}, RL tasks {stats['rl_tasks']}",
        f"  wrote {stats['files']['trajectories']} (+ tasks_*.jsonl, domains/, rubrics/, stats.json)",
    ]
    if not stats["target_met"]:
        lines.append(f"  WARNING: target {stats['target']} not met after {stats['attempts']} attempts")
    return "\n".join(lines)
