"""`summarize`: the per-template rows of `agentrl eval` (success, and whether the first call follows the plan)."""

from __future__ import annotations

from agentrl.eval.tool_use import first_tool, summarize
from agentrl.schemas.trajectory import Trajectory


def _episode(i: int, template: str, first: str | None, reward: float) -> Trajectory:
    messages: list[dict] = [{"role": "user", "content": "Cancel the order of Sema."}]
    if first:
        call = {"id": "c", "type": "function", "function": {"name": first, "arguments": "{}"}}
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "content": "{}"},
        ]
    messages.append({"role": "assistant", "content": "Done."})
    return Trajectory(
        id=f"e{i}",
        task_id=f"t{i}",
        messages=messages,
        env_reward=reward,
        metadata={"level": 2, "template": template, "planned_first_tool": "find_order"},
    )


def test_by_template_separates_skipped_lookups_from_failed_copies():
    episodes = [
        _episode(0, "shop.cancel_by_user", "find_order", 1.0),
        _episode(1, "shop.cancel_by_user", "find_order", 0.0),  # looked up, then failed
        _episode(2, "shop.cancel_by_user", "cancel_order", 0.0),  # skipped the lookup
        _episode(3, "shop.move_by_user", None, 0.0),  # no call at all
    ]
    out = summarize(episodes, {})
    assert out["success"] == 0.25 and out["success_by_level"] == {"2": 0.25}
    cancel, move = out["by_template"]["shop.cancel_by_user"], out["by_template"]["shop.move_by_user"]
    assert cancel == {"n": 3, "success": 1 / 3, "first_call_as_planned": 2 / 3}
    assert move == {"n": 1, "success": 0.0, "first_call_as_planned": 0.0}
    assert first_tool(episodes[2]) == "cancel_order" and first_tool(episodes[3]) is None


def test_episodes_without_a_template_or_plan_add_no_rows():
    bare = Trajectory(id="x", task_id="x", messages=[{"role": "user", "content": "hi"}], env_reward=1.0)
    assert summarize([bare], {})["by_template"] == {}
    planless = _episode(0, "math.add", None, 1.0)
    planless.metadata.pop("planned_first_tool")
    assert summarize([planless], {})["by_template"] == {"math.add": {"n": 1, "success": 1.0}}


def test_text_report_prints_the_template_rows(capsys):
    from agentrl.cli.main import print_result

    episodes = [
        _episode(0, "shop.cancel_by_user", "find_order", 1.0),
        _episode(1, "shop.move_by_user", None, 0.0),
    ]
    print_result({"checkpoint": "ck", **summarize(episodes, {})})
    out = capsys.readouterr().out.splitlines()
    assert "success: 0.5" in out and "checkpoint: ck" in out
    assert out[out.index("by_template:") + 1 :] == [
        "  shop.cancel_by_user: n=1 success=1.0 first_call_as_planned=1.0",
        "  shop.move_by_user: n=1 success=0.0 first_call_as_planned=0.0",
    ]
    assert not any(line.startswith("success_by_level") for line in out)  # a dict of floats stays JSON-only
