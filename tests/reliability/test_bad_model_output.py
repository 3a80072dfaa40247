"""Bad model output through the real agent loop (issue 10, item 5).

The engine is a scripted `InferenceEngine`: it stands in for the *model's text* only (no sampled model can be
made to emit these on demand). The agent loop, the trained tokenizer, the K2 tool-call parser and the
environments are the real ones. Each bad output must end as a clean observation (an error the policy sees on
its next turn, counted in `num_invalid_tool_calls`) or a clean stop (truncated by the budget), never a crash.
"""

from __future__ import annotations

import json

import pytest

from agentrl.engine.base import SamplingSpec
from agentrl.rollout.agent_loop import AgentLoop, LoopConfig
from agentrl.rollout.envs import LocalEnv
from agentrl.rollout.episode import EpisodeSpec
from agentrl.schemas.trajectory import TrajectoryStatus
from environments.protocol.demo import KeyValueEnv
from model.special_tokens import (
    IM_END,
)
from model.special_tokens import (
    TOOL_CALL_ARGUMENT_BEGIN as ARG,
)
from model.special_tokens import (
    TOOL_CALL_BEGIN as CALL,
)
from model.special_tokens import (
    TOOL_CALL_END as CALL_END,
)
from model.special_tokens import (
    TOOL_CALLS_SECTION_BEGIN as SEC,
)
from model.special_tokens import (
    TOOL_CALLS_SECTION_END as SEC_END,
)
from tests.rollout.helpers import ScriptedEngine, call_text

TASK = {"pairs": {"color": "blue"}, "ask": "color"}


def raw_call(name: str, args: str) -> str:
    return f"{SEC}{CALL}functions.{name}:0{ARG}{args}{CALL_END}{SEC_END}{IM_END}"


BAD_TURNS = {
    "section never closed": f"{SEC}{CALL}functions.set_value:0{ARG}{{}}{IM_END}",
    "call without argument marker": f"{SEC}{CALL}functions.set_value:0 oops{CALL_END}{SEC_END}{IM_END}",
    "argument marker without call": f"{SEC}{ARG}{{}}{CALL_END}{SEC_END}{IM_END}",
    "nested sections": f"{SEC}{SEC}{CALL}functions.set_value:0{ARG}{{}}{CALL_END}{SEC_END}{SEC_END}{IM_END}",
    "empty function name": raw_call("", "{}"),
    "name with spaces and slashes": raw_call("../../bin/sh -c", "{}"),
    "invalid json": raw_call("set_value", '{"key": "color", "value": '),
    "json array arguments": raw_call("set_value", "[1, 2, 3]"),
    "json null arguments": raw_call("set_value", "null"),
    "json NaN": raw_call("set_value", '{"key": NaN, "value": Infinity}'),
    "deeply nested arguments": raw_call("set_value", '{"key":' * 5000 + "1" + "}" * 5000),
    "wrong argument types": raw_call("set_value", '{"key": ["color"], "value": {"x": 1}}'),
    "unknown tool": raw_call("rm_rf_everything", '{"path": "/"}'),
}

# Odd but well-formed: valid JSON the environment may accept (or refuse as a tool error). Either way the
# episode goes on; stray closing tokens outside a section are plain text, scored as the (wrong) final answer.
ODD_TURNS = {
    "lone surrogate in arguments": raw_call("set_value", '{"key": "\\ud800", "value": "x"}'),
    "control bytes in arguments": raw_call("set_value", '{"key": "\\u0000\\u001b[2J", "value": "x"}'),
    "stray closing tokens": f"text {SEC_END}{CALL_END}{IM_END}",
}


def recovering(bad: str):
    """Turn 1: the bad output. Turn 2: a valid call (the policy saw the error). Turn 3: the answer."""

    def script(text: str, turn: int) -> str:
        if turn == 1:
            return bad
        if turn == 2:
            return call_text("set_value", {"key": "color", "value": "blue"}, 1)
        return "blue" + IM_END

    return script


def run_one(tok, script, config: LoopConfig | None = None, max_tokens: int = 100_000):
    spec = EpisodeSpec(task=TASK, env=LocalEnv(KeyValueEnv), sampling=SamplingSpec(max_tokens=max_tokens))
    engine = ScriptedEngine(tok, script)
    [t] = AgentLoop(
        engine, tok, config or LoopConfig(max_turn_tokens=60_000, max_context_tokens=200_000)
    ).run([spec])
    return t, engine


@pytest.mark.parametrize("case", sorted(BAD_TURNS))
def test_bad_tool_call_becomes_an_observation_and_the_episode_recovers(tok, case: str) -> None:
    t, engine = run_one(tok, recovering(BAD_TURNS[case]))
    assert t.status == TrajectoryStatus.ok, (t.status, t.failure_reason)
    assert t.num_invalid_tool_calls >= 1
    assert t.env_reward == 1.0 and t.num_turns == 3
    # The policy saw an error on the turn after the bad output (a tool message with an error in it).
    seen = tok.decode(engine.calls[1][0], skip_special_tokens=False)
    assert "rror" in seen.split(BAD_TURNS[case][-40:])[-1] or "rror" in seen[-2000:]


@pytest.mark.parametrize("case", sorted(ODD_TURNS))
def test_odd_but_well_formed_output_ends_cleanly(tok, case: str) -> None:
    t, _ = run_one(tok, recovering(ODD_TURNS[case]))
    assert t.status == TrajectoryStatus.ok, (t.status, t.failure_reason)
    assert t.env_reward in (0.0, 1.0) and len(t.token_ids) == len(t.loss_mask)


def test_regression_an_empty_tool_call_section_is_a_format_error() -> None:
    """Found here: a section with no call in it parsed as an empty final answer, silently ending the episode."""
    from model.chat_format import parse_assistant_output

    parsed = parse_assistant_output(f"{SEC}{ARG}{{}}{CALL_END}{SEC_END}{IM_END}")
    assert parsed.tool_calls == [] and parsed.errors == ["tool-call section holds no tool call"]


def test_one_megabyte_arguments_are_a_clean_tool_result(tok) -> None:
    big = {"key": "color", "value": "x" * 2**20}
    t, _ = run_one(
        tok,
        lambda text, turn: call_text("set_value", big) if turn == 1 else "blue" + IM_END,
        LoopConfig(max_turn_tokens=2_000_000, max_context_tokens=4_000_000),
        max_tokens=3_000_000,
    )
    assert t.status == TrajectoryStatus.ok, t.failure_reason
    assert t.num_turns == 2 and len(t.token_ids) == len(t.loss_mask) == len(t.logprobs)


def test_one_megabyte_arguments_over_the_turn_budget_truncate_cleanly(tok) -> None:
    big = {"key": "color", "value": "x" * 2**20}
    t, _ = run_one(tok, lambda text, turn: call_text("set_value", big), LoopConfig(), max_tokens=100_000)
    assert t.status == TrajectoryStatus.truncated and "max_turn_tokens" in t.failure_reason
    assert sum(t.loss_mask) == LoopConfig().max_turn_tokens


def test_endless_generation_hits_the_sample_budget(tok) -> None:
    # Never emits a stop token, turn after turn: the per-sample budget (K2 budget control) ends the episode.
    t, engine = run_one(tok, lambda text, turn: "and then " * 10_000, max_tokens=300)
    assert t.status == TrajectoryStatus.truncated
    assert sum(t.loss_mask) == 300 and len(engine.calls) >= 1


def test_endless_tool_calling_hits_max_turns(tok) -> None:
    t, _ = run_one(
        tok, lambda text, turn: raw_call("nope", "{}"), LoopConfig(max_turns=5, max_context_tokens=16000)
    )
    assert t.status == TrajectoryStatus.truncated and "max_turns" in t.failure_reason
    assert t.num_invalid_tool_calls == 5


def test_trajectory_of_bad_output_round_trips_through_the_schema(tok) -> None:
    from agentrl.schemas.trajectory import Trajectory

    t, _ = run_one(tok, recovering(ODD_TURNS["lone surrogate in arguments"]))
    again = Trajectory.model_validate_json(t.model_dump_json())
    assert again.token_ids == t.token_ids and json.loads(t.model_dump_json())["status"] == "ok"
