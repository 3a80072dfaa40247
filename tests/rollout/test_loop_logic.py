"""Agent-loop logic with a scripted engine and the real key-value environment (fast; no vLLM).

Covers what a sampled model cannot be made to do on demand: malformed tool calls, budgets, partial rollouts
resumed across policy versions, environment failures, an engine that raises.
"""

from __future__ import annotations

import pytest

from agentrl.engine.base import EngineError, SamplingSpec
from agentrl.rollout.agent_loop import AgentLoop, LoopConfig
from agentrl.rollout.envs import LocalEnv
from agentrl.rollout.episode import EpisodeSpec
from agentrl.schemas.trajectory import TrajectoryStatus
from environments.protocol.demo import KeyValueEnv
from model.chat_format import GENERATION_PROMPT, render_message, render_messages
from model.special_tokens import IM_END, TOOL_CALL_BEGIN, TOOL_CALLS_SECTION_BEGIN
from tests.rollout.helpers import ScriptedEngine, call_text

TASK = {"pairs": {"color": "blue"}, "ask": "color"}


@pytest.fixture(scope="module")
def tok():
    from model.tokenizer import default_corpus, train_tokenizer

    return train_tokenizer(default_corpus(), vocab_size=2048)


def good_script(text: str, turn: int) -> str:
    if turn == 1:
        return call_text("set_value", {"key": "color", "value": "blue"})
    return "blue" + IM_END


def spec(env, **kw) -> EpisodeSpec:
    kw.setdefault("sampling", SamplingSpec(temperature=1.0, max_tokens=400))
    return EpisodeSpec(task=TASK, env=env, **kw)


def check_token_contract(traj, tok, engine) -> int:
    """Mismatches between what the engine saw/produced and what the trajectory stores (must be 0)."""
    mismatches = 0
    for prompt, out in engine.calls:
        n = len(prompt)
        if traj.token_ids[:n] != prompt:
            continue  # another episode's call
        mismatches += traj.token_ids[n : n + len(out)] != out
        mismatches += any(m != 1 for m in traj.loss_mask[n : n + len(out)])
    mismatches += sum(
        (m == 1) != (lp is not None) for m, lp in zip(traj.loss_mask, traj.logprobs, strict=True)
    )
    return mismatches


def test_multi_turn_tokens_are_appended_never_rerendered(tok):
    env = LocalEnv(KeyValueEnv)
    engine = ScriptedEngine(tok, good_script)
    [t] = AgentLoop(engine, tok).run([spec(env)])
    assert t.status == TrajectoryStatus.ok and t.env_reward == 1.0
    assert t.num_turns == 2 and t.num_tool_calls == 1 and t.num_invalid_tool_calls == 0
    assert len(engine.calls) == 2
    # turn 2's prompt = turn 1's prompt + turn 1's generated tokens + the tokenized tool-result suffix
    (p1, g1), (p2, _) = engine.calls
    suffix = render_message(t.messages[3]) + GENERATION_PROMPT
    assert p2 == p1 + g1 + tok(suffix, add_special_tokens=False)["input_ids"]
    # the initial prompt is the chat template's rendering of the observation
    first = render_messages(t.messages[:2], tools=KeyValueEnv().registry.openai(), add_generation_prompt=True)
    assert p1 == tok(first, add_special_tokens=False)["input_ids"] and t.prompt_len == len(p1)
    assert check_token_contract(t, tok, engine) == 0
    assert sum(t.loss_mask) == sum(len(g) for _, g in engine.calls)


def test_malformed_tool_call_becomes_error_observation(tok):
    def script(text: str, turn: int) -> str:
        if turn == 1:  # section opened, call never closed, no argument marker
            return f"{TOOL_CALLS_SECTION_BEGIN}{TOOL_CALL_BEGIN}functions.set_value:0 oops{IM_END}"
        if turn == 2:
            assert "malformed tool call" in text  # the policy sees the error
            return call_text("set_value", {"key": "color", "value": "blue"}, 1)
        return "blue" + IM_END

    engine = ScriptedEngine(tok, script)
    [t] = AgentLoop(engine, tok).run([spec(LocalEnv(KeyValueEnv))])
    assert t.status == TrajectoryStatus.ok and t.env_reward == 1.0
    assert t.num_invalid_tool_calls >= 1 and t.num_turns == 3
    assert check_token_contract(t, tok, engine) == 0


def test_bad_arguments_are_env_tool_errors_not_crashes(tok):
    def script(text: str, turn: int) -> str:
        if turn == 1:
            return call_text("set_value", {"key": "color"})  # missing "value"
        return "blue" + IM_END

    [t] = AgentLoop(ScriptedEngine(tok, script), tok).run([spec(LocalEnv(KeyValueEnv))])
    assert t.status == TrajectoryStatus.ok and t.num_invalid_tool_calls == 1 and t.env_reward == 0.0


def test_token_budget_truncates_and_flags(tok):
    engine = ScriptedEngine(tok, lambda text, turn: "word " * 50 + IM_END)
    loop = AgentLoop(engine, tok, LoopConfig(max_turn_tokens=512))
    [t] = loop.run([spec(LocalEnv(KeyValueEnv), sampling=SamplingSpec(max_tokens=20))])
    assert t.status == TrajectoryStatus.truncated and sum(t.loss_mask) == 20


def test_max_turns_truncates(tok):
    engine = ScriptedEngine(tok, lambda text, turn: f"{TOOL_CALLS_SECTION_BEGIN}junk{IM_END}")
    [t] = AgentLoop(engine, tok, LoopConfig(max_turns=3)).run([spec(LocalEnv(KeyValueEnv))])
    assert t.status == TrajectoryStatus.truncated and t.num_turns == 3 and "max_turns" in t.failure_reason


def test_partial_rollout_resumes_across_policy_versions(tok):
    env = LocalEnv(KeyValueEnv)
    ref_engine = ScriptedEngine(tok, good_script)
    [ref] = AgentLoop(ref_engine, tok).run([spec(env)])

    engine = ScriptedEngine(tok, good_script)
    loop = AgentLoop(engine, tok)
    [p] = loop.run([spec(env, segment_tokens=5, policy_version=0)])
    assert p.status == TrajectoryStatus.partial and sum(p.loss_mask) == 5 and p.policy_versions == [0]
    versions = [0]
    while p.status == TrajectoryStatus.partial:
        versions.append(versions[-1] + 1)
        [p] = loop.run([spec(env, segment_tokens=5, policy_version=versions[-1], resume_from=p)])
    assert p.status == TrajectoryStatus.ok and p.env_reward == 1.0
    # same tokens as an uninterrupted rollout, mid-turn resumes included
    assert p.token_ids == ref.token_ids and p.loss_mask == ref.loss_mask
    assert p.policy_versions == versions[: len(p.policy_versions)] and len(p.policy_versions) > 2
    spans = p.metadata["loop"]["version_spans"]
    assert sum(end - start for start, end, _ in spans) == sum(p.loss_mask)
    assert all(all(p.loss_mask[i] for i in range(s, e)) for s, e, _ in spans)


def test_env_failure_fails_that_trajectory_only(tok):
    class Flaky(KeyValueEnv):
        def step(self, action):
            if action.tool_calls:
                raise RuntimeError("simulated crash in the env")
            return super().step(action)

    engine = ScriptedEngine(tok, good_script)
    trajs = AgentLoop(engine, tok).run([spec(LocalEnv(Flaky)), spec(LocalEnv(KeyValueEnv))])
    assert trajs[0].status == TrajectoryStatus.failed
    assert "simulated crash" in trajs[0].failure_reason and "step" in trajs[0].failure_reason
    assert trajs[1].status == TrajectoryStatus.ok


def test_engine_failure_fails_fast(tok):
    class Dead:
        def generate(self, prompts, sampling):
            raise ConnectionError("engine gone")

    with pytest.raises(EngineError, match="engine gone"):
        AgentLoop(Dead(), tok).run([spec(LocalEnv(KeyValueEnv))])


def test_http_env_stopped_mid_rollout_marks_failed(tok):
    from environments.protocol import EnvClient, ServerSettings, create_env_app
    from tests.rollout.helpers import serve

    with serve(create_env_app(KeyValueEnv, ServerSettings())) as (url, server):
        client = EnvClient(url, timeout=5.0, retries=1, backoff_s=0.05)

        def script(text: str, turn: int) -> str:
            if turn == 2:
                server.should_exit = True  # the env server goes down while the policy thinks
                import time

                time.sleep(1.5)
            return good_script(text, turn)

        [t] = AgentLoop(ScriptedEngine(tok, script), tok).run([spec(client, env_name="kv")])
    assert t.status == TrajectoryStatus.failed
    assert "kv" in t.failure_reason and "step" in t.failure_reason


def test_partial_buffer_carries_unfinished_trajectories_across_iterations(tok, tmp_path):
    from agentrl.rollout.partial import PartialRolloutBuffer

    env = LocalEnv(KeyValueEnv)
    loop = AgentLoop(ScriptedEngine(tok, good_script), tok)
    buffer = PartialRolloutBuffer(tmp_path / "partial.jsonl")
    finished, version = [], 0
    new = [spec(env) for _ in range(3)]
    while new or len(buffer):
        finished += buffer.run_iteration(loop, new, policy_version=version, segment_tokens=8)
        new, version = [], version + 1
        assert version < 20
    assert len(finished) == 3 and all(t.status == TrajectoryStatus.ok for t in finished)
    assert all(len(t.policy_versions) > 1 for t in finished)
    assert (tmp_path / "partial.jsonl").read_text() == ""
