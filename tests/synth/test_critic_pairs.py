"""Synth critic pairs: a demonstration and the same task replayed with one plausible mistake, labelled by
tool_world's own verifiable reward (replayed here independently), without disturbing the synth trajectories."""

from __future__ import annotations

import json
import random

import pytest

from agentrl.synth.critic_pairs import KINDS, CorruptingAgent, corrupted_episode
from agentrl.synth.episodes import run_episode
from agentrl.synth.pipeline import run_synth
from agentrl.synth.tasklists import read_jsonl
from environments.tool_world.session import WorldSession

SMALL = {"target": 120, "tasks": {"heldout": 4, "rl": 4}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    plain = tmp_path_factory.mktemp("plain")
    paired = tmp_path_factory.mktemp("paired")
    run_synth({**SMALL, "out_dir": str(plain)}, echo=None)
    stats = run_synth({**SMALL, "out_dir": str(paired), "critic_pairs": 80}, echo=None)
    return plain, paired, stats


def _tasks(out):
    from agentrl.synth.config import SynthConfig
    from agentrl.synth.pipeline import build_repository
    from agentrl.synth.tasks import TaskFactory

    cfg = SynthConfig.model_validate({**SMALL, "out_dir": str(out)})
    factory = TaskFactory(build_repository(cfg, None)[0], cfg.tools, cfg.tasks, cfg.seed)
    rng = random.Random(f"{cfg.seed}:train")
    tasks = {}
    for i in range(400):
        t = factory.make("train", i, cfg.tasks.train_level_weights, rng)
        tasks[t.id] = t
    return tasks


def _replay(task, messages, seed):
    """Score a recorded episode by replaying its calls and final reply in a fresh tool_world session."""
    s = WorldSession(task, seed=seed)
    answer = None
    for m in messages[2:]:
        if m["role"] == "assistant" and m.get("tool_calls"):
            for c in m["tool_calls"]:
                s.call(c["function"]["name"], c["function"]["arguments"])
        elif m["role"] == "assistant":
            answer = m["content"]
            s.say(answer)
    return s.finish(answer)[0]


def test_trajectories_are_unchanged_by_critic_pairs(runs):
    plain, paired, _ = runs
    assert (plain / "trajectories.jsonl").read_bytes() == (paired / "trajectories.jsonl").read_bytes()
    assert not (plain / "critic_pairs.jsonl").exists()


def test_pairs_are_labelled_by_the_verifiable_reward(runs):
    _, paired, stats = runs
    pairs = read_jsonl(paired / "critic_pairs.jsonl")
    assert stats["critic_pairs"] == len(pairs) >= 40  # of 80 asked: a mistake that does not matter is dropped
    assert set(stats["critic_pairs_by_kind"]) <= set(KINDS) and len(stats["critic_pairs_by_kind"]) >= 3
    demos = {r["id"]: r for r in read_jsonl(paired / "trajectories.jsonl")}
    tasks = _tasks(paired)
    for pair in pairs:
        demo = demos[pair["id"].removesuffix(".critic")]
        assert pair["good"]["messages"] == demo["messages"]
        good, bad = pair["good"]["messages"], pair["bad"]["messages"]
        assert good[:2] == bad[:2]  # same system prompt and user request
        assert good != bad
        assert pair["good"]["reward"] > pair["bad"]["reward"]
        task, seed = tasks[pair["task_id"]], demo["provenance"]["episode_seed"]
        if not any(m["role"] == "user" for m in good[2:]):  # no clarification turn to replay
            assert _replay(task, good, seed) == pair["good"]["reward"]
            assert _replay(task, bad, seed) == pair["bad"]["reward"]


def test_wrong_values_are_plausible_not_typos(runs):
    """A wrong argument is another value the task's world holds (or another enum member / number)."""
    _, paired, _ = runs
    tasks = _tasks(paired)
    checked = 0
    for pair in read_jsonl(paired / "critic_pairs.jsonl"):
        if pair["corruption"] != "wrong_arg":
            continue
        task = tasks[pair["task_id"]]
        world = {json.dumps(v) for rows in task.state.values() for row in rows for v in row.values()}
        enums = {
            json.dumps(e)
            for t in task.tools
            for p in (t.parameters.get("properties") or {}).values()
            for e in p.get("enum", [])
        }
        for m in pair["bad"]["messages"]:
            for c in m.get("tool_calls") or []:
                for v in json.loads(c["function"]["arguments"]).values():
                    gold = {json.dumps(x) for g in task.gold for x in g.arguments.values()}
                    if json.dumps(v) not in gold:
                        assert isinstance(v, int) or json.dumps(v) in world | enums, v
                        checked += 1
    assert checked > 0


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown corruption"):
        CorruptingAgent("nonsense", random.Random(0))


def test_corrupted_episode_is_seeded(runs):
    _, paired, _ = runs
    task = next(iter(_tasks(paired).values()))
    a = corrupted_episode(task, 7, random.Random(1))
    b = corrupted_episode(task, 7, random.Random(1))
    assert (a is None) == (b is None)
    if a is not None:
        assert a[0] == b[0] and a[1].messages == b[1].messages
    episode = run_episode(task, CorruptingAgent("wrong_arg", random.Random(3)), 7)
    assert episode.messages[:2] == WorldSession(task, seed=7).initial_messages()


def test_guessed_skips_every_lookup_and_makes_up_what_it_would_have_fetched(runs):
    """The SFT policy's commonest RL failure: no lookup, and a value the world does not hold (an id) or another
    row's value in the write; the user's own values are kept."""
    _, paired, _ = runs
    tasks = _tasks(paired)
    guessed = [p for p in read_jsonl(paired / "critic_pairs.jsonl") if p["corruption"] == "guessed"]
    assert guessed
    made_up = 0
    for pair in guessed:
        task = tasks[pair["task_id"]]
        lookups = {t.name for t in task.tools if t.op.kind in ("get", "list")}
        said = " ".join(m["content"] for m in pair["bad"]["messages"] if m["role"] == "user")
        held = {str(v) for rows in task.state.values() for row in rows for v in row.values()}
        calls = [c["function"] for m in pair["bad"]["messages"] for c in m.get("tool_calls") or []]
        assert not any(c["name"] in lookups for c in calls)
        for c in calls:
            for v in json.loads(c["arguments"]).values():
                gold = {str(x) for g in task.gold for x in g.arguments.values()}
                if str(v) not in said and str(v) in gold:
                    raise AssertionError(f"{pair['task_id']}: fetched value {v!r} used without its lookup")
                made_up += str(v) not in held
    assert made_up > 0
