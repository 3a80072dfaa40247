"""End to end `run_synth` at a small size: outputs, format, provenance, determinism, held-out disjointness."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agentrl.rewards.rubrics import load_rubric_file
from agentrl.synth.pipeline import SynthError, run_synth
from agentrl.synth.tasklists import TaskFileError, load_tasks, read_jsonl, task_lists
from environments.tool_world.domains import builtin_domains
from environments.tool_world.session import WorldSession
from tests.synth.test_reply_style import quoted_fields

SMALL = {"target": 120, "tasks": {"heldout": 30, "rl": 20}, "tools": {"evolve": {"categories": 2}}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    stats = run_synth({**SMALL, "out_dir": str(out)}, echo=None)
    return out, stats


def test_outputs_and_stats(run):
    out, stats = run
    assert stats["accepted"] == 120 and stats["target_met"]
    assert json.loads((out / "stats.json").read_text()) == stats
    assert 0.5 < stats["acceptance_rate"] < 1.0  # the error model makes the judge reject some
    assert set(stats["acceptance_by_domain"]) >= {"shop", "bank", "home", "clinic"}
    assert stats["tools_by_source"]["hand"] > 0 and stats["tools_by_source"]["evolved"] > 0
    assert set(stats["accepted_by_level"]) == {"1", "2", "3"}
    assert stats["rejections_by_reason"]
    for name in ("trajectories", "heldout", "rl", "rubrics", "domains"):
        assert Path(stats["files"][name]).exists(), name
    assert len(list(Path(stats["files"]["domains"]).glob("*.json"))) == stats["domains"]


def test_records_are_openai_format_with_k2_call_ids(run):
    out, _ = run
    recs = read_jsonl(out / "trajectories.jsonl")
    for rec in recs:
        msgs = rec["messages"]
        assert msgs[0]["role"] == "system" and msgs[1]["role"] == "user" and msgs[-1]["role"] == "assistant"
        idx, open_ids = 0, []
        for m in msgs:
            for c in m.get("tool_calls") or []:
                assert c["id"] == f"functions.{c['function']['name']}:{idx}" and c["type"] == "function"
                json.loads(c["function"]["arguments"])
                idx += 1
                open_ids.append(c["id"])
            if m["role"] == "tool":
                assert m["tool_call_id"] == open_ids.pop(0)
        names = {t["function"]["name"] for t in rec["tools"]}
        assert all(c["function"]["name"] in names for m in msgs for c in m.get("tool_calls") or [])
        prov = rec["provenance"]
        assert prov["generator"].startswith("agentrl-synth/") and prov["seed"] == 0
        assert prov["backend"]["agent"] == "procedural" and prov["judge"]["verdict"] == "pass"
        assert prov["judge"]["scores"]["final_state"] == 1.0 and prov["reward"] == 1.0


def test_trajectories_replay_in_tool_world(run):
    """The recorded observations are exactly what tool_world produces for the same task and seed."""
    out, _ = run
    recs = read_jsonl(out / "trajectories.jsonl")[:40]
    from agentrl.synth.config import SynthConfig
    from agentrl.synth.pipeline import build_repository
    from agentrl.synth.tasks import TaskFactory

    cfg = SynthConfig.model_validate({**SMALL, "out_dir": str(out)})
    import random

    factory = TaskFactory(build_repository(cfg, None)[0], cfg.tools, cfg.tasks, cfg.seed)
    rng = random.Random(f"{cfg.seed}:train")
    tasks = {}
    for i in range(int(recs[-1]["task_id"].split(".")[1]) + 1):
        t = factory.make("train", i, cfg.tasks.train_level_weights, rng)
        tasks[t.id] = t
    for rec in recs:
        s = WorldSession(tasks[rec["task_id"]], seed=rec["provenance"]["episode_seed"])
        for m in rec["messages"]:
            if m.get("tool_calls"):
                c = m["tool_calls"][0]["function"]
                got = s.call(c["name"], c["arguments"]).content
            elif m["role"] == "tool":
                assert m["content"] == got
            elif m["role"] == "assistant":
                s.say(m["content"])
        assert s.finish(rec["messages"][-1]["content"])[0] == 1.0


def test_loadable_by_hf_datasets(run):
    datasets = pytest.importorskip("datasets")
    out, _ = run
    ds = datasets.load_dataset("json", data_files=str(out / "trajectories.jsonl"), split="train")
    assert len(ds) == 120
    row = ds[0]
    assert row["messages"][0]["role"] == "system" and row["tools"][0]["type"] == "function"
    assert isinstance(row["tools"][0]["function"]["parameters"]["properties"], dict)


def test_rubrics_validate_against_the_rubric_schema(run):
    out, _ = run
    rubrics = load_rubric_file(out / "rubrics" / "tool_world.yaml")
    rec = read_jsonl(out / "trajectories.jsonl")[0]
    matching = [r for r in rubrics if r.applies_to(task_id=rec["task_id"])]
    assert len(matching) == 1 and matching[0].id == rec["provenance"]["rubric_id"]
    assert matching[0].expected_tool_pattern


def test_heldout_values_never_appear_in_training(run):
    out, _ = run
    enums = {
        str(v)
        for d in builtin_domains()
        for t in d.tables.values()
        for c in t.columns.values()
        for v in c.values
    } | {"new", "ok"}
    train_values: set[str] = set()  # every string value the agent copied or saw in training
    for rec in read_jsonl(out / "trajectories.jsonl"):
        for m in rec["messages"]:
            for c in m.get("tool_calls") or []:
                train_values |= {
                    v for v in json.loads(c["function"]["arguments"]).values() if isinstance(v, str)
                }
            if m["role"] == "tool":
                body = json.loads(m["content"])
                rows = (
                    body
                    if isinstance(body, list)
                    else body.get("rows", [body])
                    if isinstance(body, dict)
                    else []
                )
                train_values |= {
                    v for r in rows if isinstance(r, dict) for v in r.values() if isinstance(v, str)
                }
    heldout = load_tasks(out / "tasks_heldout.jsonl")
    assert len(heldout) == 30 and all(t.split == "heldout" for t in heldout)
    values = {
        v
        for t in heldout
        for rows in t.state.values()
        for r in rows
        for v in r.values()
        if isinstance(v, str)
    } - enums
    values = {v for v in values if not re.fullmatch(r"[a-z]+", v)}  # enum-like words of evolved domains
    assert len(values) > 50 and len(train_values) > 200
    assert not (values & train_values)


def test_task_lists_match_the_written_files(run):
    out, _ = run
    lists = task_lists({**SMALL, "out_dir": str(out)})
    assert lists["heldout"] == read_jsonl(out / "tasks_heldout.jsonl")
    assert lists["rl"] == read_jsonl(out / "tasks_rl.jsonl")
    assert {t["split"] for t in lists["rl"]} == {"rl"}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    cfg = {"target": 30, "tasks": {"heldout": 5, "rl": 5}}
    a = run_synth({**cfg, "out_dir": str(tmp_path / "a")}, echo=None)
    b = run_synth({**cfg, "out_dir": str(tmp_path / "b")}, echo=None)
    c = run_synth({**cfg, "seed": 1, "out_dir": str(tmp_path / "c")}, echo=None)
    ta, tb, tc = (Path(s["files"]["trajectories"]).read_text() for s in (a, b, c))
    assert ta == tb and ta != tc


def test_bad_inputs_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntools: [{name: t, op: {kind: get, table: nope}}]\n")
    with pytest.raises(SynthError, match="bad.yaml"):
        run_synth(
            {"target": 5, "out_dir": str(tmp_path / "o"), "tools": {"domain_files": [str(bad)]}}, echo=None
        )
    broken = tmp_path / "tasks.jsonl"
    broken.write_text('{"id": "a"}\n{oops\n')
    with pytest.raises(TaskFileError, match=r"tasks.jsonl:2: broken JSONL line"):
        read_jsonl(broken)
    one = tmp_path / "one.jsonl"
    one.write_text('{"id": "a"}\n')
    with pytest.raises(TaskFileError, match=r"record 1 \(a\): domain: Field required"):
        load_tasks(one)


def test_synth_domains_load_into_tool_world(run, monkeypatch):
    """The evolved domains synth writes are data tool_world serves: built-in task ids and solvable tasks."""
    from fastapi.testclient import TestClient

    from environments.protocol import ServerSettings
    from environments.tool_world.domains import load_domains
    from environments.tool_world.server import DOMAINS_ENV, builtin_tasks, create_app
    from tests.tool_world.conftest import run_gold

    out, stats = run
    domains = load_domains([out / "domains"])
    assert sorted(d.name for d in domains) == sorted(stats["domain_names"])
    evolved = [d for d in domains if d.source == "evolved"]
    tasks = builtin_tasks(per_template=1, domains=evolved)
    assert tasks and all(run_gold(t)[0] == 1.0 for t in tasks.values())
    monkeypatch.setenv(DOMAINS_ENV, str(out / "domains"))
    with TestClient(create_app(ServerSettings())) as client:
        ids = client.get("/metadata").json()["task_ids"]
    assert any(i.startswith(evolved[0].name + ".") for i in ids)


def test_shipped_configs_load_and_import_example_tools(tmp_path, monkeypatch):
    from agentrl.config.loader import load_config
    from agentrl.synth.config import SynthConfig

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    base = load_config(SynthConfig, ["configs/synth.yaml"])
    assert base == SynthConfig()  # the YAML documents the defaults exactly
    cfg = load_config(
        SynthConfig,
        ["configs/synth.yaml", "configs/synth_import.yaml"],
        ["target=150", f"out_dir={tmp_path}", "tasks.heldout=5", "tasks.rl=5"],
    )
    stats = run_synth(cfg, echo=None)
    assert stats["tools_by_source"]["file"] == 5
    assert {"fn_example_functions", "fn_example_bfcl"} <= set(stats["acceptance_by_domain"])


def test_shortcut_demonstrations_change_only_the_training_data(run, tmp_path):
    """`agent.shortcut_rate` + an outcome judge: some kept demonstrations skip their lookups (recorded in
    provenance, tool pattern scored 0), while the held-out and RL task lists are byte-identical to the run without
    shortcuts (the knob never touches evaluation)."""
    base_out, base_stats = run
    out = tmp_path / "shortcut"
    cfg = {
        **SMALL,
        "out_dir": str(out),
        "agent": {"shortcut_rate": 0.5},
        "judge": {"require_tool_pattern": False},
    }
    stats = run_synth(cfg, echo=None)
    assert base_stats["accepted_with_shortcut"] == 0
    # questions are never shortcut (their answers are grounded), so only writes after a lookup skip it
    assert 0.05 * stats["accepted"] < stats["accepted_with_shortcut"] < 0.8 * stats["accepted"]
    for name in ("tasks_heldout.jsonl", "tasks_rl.jsonl"):
        assert (out / name).read_bytes() == (base_out / name).read_bytes()
    for rec in read_jsonl(out / "trajectories.jsonl"):
        skipped = "shortcut" in rec["provenance"]["mistakes"]
        assert rec["provenance"]["judge"]["scores"]["tool_pattern"] == (0.0 if skipped else 1.0)
        assert rec["provenance"]["reward"] == 1.0
    # the strict judge rejects every shortcut: none survive without the outcome judge
    strict = run_synth({**cfg, "out_dir": str(tmp_path / "strict"), "judge": {}}, echo=None)
    assert strict["accepted_with_shortcut"] == 0 and strict["rejections_by_reason"]["tool_pattern"] > 0
    # episodes played without grounding: questions are shortcut too (answered with no call at all), while the
    # task files, which eval and RL score, still ground their required outputs
    loose_out = tmp_path / "ungrounded"
    loose = run_synth(
        {**cfg, "out_dir": str(loose_out), "judge": {**cfg["judge"], "require_grounded_outputs": False}},
        echo=None,
    )
    assert loose["accepted_with_shortcut"] > stats["accepted_with_shortcut"]
    no_call = [
        r
        for r in read_jsonl(loose_out / "trajectories.jsonl")
        if "shortcut" in r["provenance"]["mistakes"] and r["num_tool_calls"] == 0
    ]
    assert no_call and not any(
        "shortcut" in r["provenance"]["mistakes"] and r["num_tool_calls"] == 0
        for r in read_jsonl(out / "trajectories.jsonl")
    )
    for name in ("tasks_heldout.jsonl", "tasks_rl.jsonl"):
        assert (loose_out / name).read_bytes() == (base_out / name).read_bytes()
        assert all(t["grounded_outputs"] for t in read_jsonl(loose_out / name))


def test_quoted_replies_copy_their_value_from_a_tool_result(run, tmp_path):
    """`tasks.reply_style=quoted`: a demonstrated reply states each looked-up value as `"key":value`, and that
    exact text is in a tool result the agent saw earlier in the same episode; required outputs are unchanged."""
    out = tmp_path / "quoted"
    run_synth({**SMALL, "out_dir": str(out), "tasks": {**SMALL["tasks"], "reply_style": "quoted"}}, echo=None)
    quoted = 0
    for rec in read_jsonl(out / "trajectories.jsonl"):
        reply = rec["messages"][-1].get("content") or ""
        seen = " ".join(m["content"] for m in rec["messages"] if m["role"] == "tool")
        for fragment in quoted_fields(reply):
            assert fragment in seen, (rec["id"], fragment, seen)
            quoted += 1
    assert quoted > 10
    base_out, _ = run
    base = {t["id"]: t["required_outputs"] for t in read_jsonl(base_out / "tasks_heldout.jsonl")}
    assert {t["id"]: t["required_outputs"] for t in read_jsonl(out / "tasks_heldout.jsonl")} == base


def test_narrow_finders_return_only_the_key_and_fetch_the_row_when_the_answer_needs_it(tmp_path):
    """`tools.finder_result=key`: every demonstrated finder result holds just the key and the searched column, and
    the tasks whose reply needs more of that row fetch it by id (find, then get) in the task files as well."""
    out = tmp_path / "narrow"
    run_synth({**SMALL, "out_dir": str(out), "tools": {**SMALL["tools"], "finder_result": "key"}}, echo=None)
    finder_results = 0
    for rec in read_jsonl(out / "trajectories.jsonl"):
        calls = {c["id"]: c["function"] for m in rec["messages"] for c in m.get("tool_calls") or []}
        for m in rec["messages"]:
            fn = calls.get(m.get("tool_call_id"), {})
            result = json.loads(m["content"]) if m["role"] == "tool" else None
            if fn.get("name", "").startswith("find_") and "error" not in result and not result.get("partial"):
                assert set(result) == {"id", *json.loads(fn["arguments"])}, (rec["id"], result)
                finder_results += 1
    assert finder_results > 5
    tasks = read_jsonl(out / "tasks_heldout.jsonl") + read_jsonl(out / "tasks_rl.jsonl")
    plans = [[g["name"].split("_", 1) for g in t["gold"]] for t in tasks]
    assert any(p[:2] == [["find", noun], ["get", noun]] for p in plans for noun in [p[0][-1]])
