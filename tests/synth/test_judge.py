"""Judge filtering: each rubric item rejects the trajectories that break it; gold and recovered ones pass."""

from __future__ import annotations

import json
import random

import pytest

from agentrl.synth.config import AgentConfig
from agentrl.synth.dedup import dedup
from agentrl.synth.episodes import AgentAction, ProceduralAgent, run_episode
from agentrl.synth.judge import judge_episode
from environments.tool_world.domains import builtin_domains
from environments.tool_world.session import WorldSession
from environments.tool_world.spec import TaskSpec
from environments.tool_world.taskgen import instantiate

DOMAINS = {d.name: d for d in builtin_domains()}


def _task(domain: str, template: str, seed: int = 0, split: str = "train", **kw) -> TaskSpec:
    d = DOMAINS[domain]
    tpl = next(t for t in d.templates if t.id == template)
    return instantiate(d, tpl, random.Random(seed), split=split, task_id=f"{domain}.{template}", **kw)


class Scripted:
    """A policy that plays a fixed list of actions."""

    def __init__(self, actions):
        self.actions = list(actions)

    def start(self, task, rng):
        self.i = 0

    def act(self, messages, tools):
        self.i += 1
        return self.actions[self.i - 1] if self.i <= len(self.actions) else AgentAction(text="bye")


def _gold_actions(task: TaskSpec):
    from environments.tool_world.session import dumps

    return [AgentAction(calls=[(g.name, dumps(g.arguments))]) for g in task.gold] + [
        AgentAction(text=task.answer)
    ]


def test_error_free_demonstrator_always_passes():
    agent = ProceduralAgent(AgentConfig(error_rate=0.0, give_up_rate=0.0))
    for d in DOMAINS.values():
        for tpl in d.templates:
            task = _task(d.name, tpl.id, fail_rate=0.3, vague_rate=1.0)
            v = judge_episode(run_episode(task, agent, seed=1))
            assert v.passed, (task.id, v.reasons)


def test_unrecovered_typo_fails_and_recovered_typo_passes():
    task = _task("shop", "status")
    bad = run_episode(task, ProceduralAgent(AgentConfig(error_rate=1.0, recover_rate=0.0)), seed=0)
    v = judge_episode(bad)
    assert not v.passed and v.scores["required_outputs"] == 0.0 and "typo" in bad.mistakes
    good = run_episode(task, ProceduralAgent(AgentConfig(error_rate=0.0)), seed=0)
    fixed = run_episode(task, _OneTypo(), seed=0)
    assert "recovered" in fixed.mistakes and judge_episode(fixed).passed
    assert len(fixed.messages) == len(good.messages) + 2  # the wrong call and its error stay in the demo


class _OneTypo(ProceduralAgent):
    def __init__(self):
        super().__init__(AgentConfig(error_rate=1.0, recover_rate=1.0))

    def _call(self, call):
        action = super()._call(call)
        self.cfg = AgentConfig(error_rate=0.0, recover_rate=1.0)  # only the first call is wrong
        return action


def test_silent_wrong_write_fails_the_state_check():
    task = _task("shop", "move")
    ep = run_episode(task, ProceduralAgent(AgentConfig(error_rate=1.0, recover_rate=1.0)), seed=3)
    v = judge_episode(ep)
    assert not v.passed and v.scores["final_state"] == 0.0 and any(r.startswith("state:") for r in v.reasons)


def test_giving_up_after_busy_fails():
    task = _task("bank", "balance", fail_rate=0.9)
    ep = run_episode(task, ProceduralAgent(AgentConfig(error_rate=0.0, give_up_rate=1.0)), seed=0)
    assert "gave_up" in ep.mistakes and not judge_episode(ep).passed


def test_not_retrying_a_transient_failure_fails_the_retry_checkpoint():
    task = _task("bank", "balance", fail_rate=0.9)
    gold = _gold_actions(task)
    # after a failure, the scripted agent moves on and answers with the right value anyway
    ep = run_episode(task, Scripted([gold[0], AgentAction(text=task.answer)]), seed=0)
    assert ep.session.calls[0]["kind"] == "transient"
    v = judge_episode(ep)
    assert v.scores["retries"] == 0.0 and not v.passed


def test_invalid_calls_and_skipped_clarification_fail():
    task = _task("shop", "status", vague_rate=1.0)
    gold = _gold_actions(task)
    ep = run_episode(task, Scripted(gold), seed=0)  # acts on an id the user never gave
    v = judge_episode(ep)
    assert v.scores["clarifies"] == 0.0 and not v.passed
    plain = _task("shop", "status")
    bad_args = AgentAction(calls=[("get_order", '{"id": 7}')])
    ep2 = run_episode(plain, Scripted([bad_args, *_gold_actions(plain)]), seed=0)
    v2 = judge_episode(ep2)
    assert ep2.reward == 1.0 and v2.scores["valid_calls"] == 0.0 and not v2.passed


def test_wrong_tool_order_fails_the_pattern():
    task = _task("bank", "pay")
    gold = _gold_actions(task)
    ep = run_episode(task, Scripted([gold[1], gold[2], gold[0], gold[3]]), seed=0)
    v = judge_episode(ep)
    assert ep.reward == 1.0 and v.scores["tool_pattern"] == 0.0 and not v.passed


def test_dedup_exact_and_near():
    task = _task("shop", "cancel_and_move")
    agent = ProceduralAgent(AgentConfig(error_rate=0.0))
    ep = run_episode(task, agent, seed=0)
    rec = {"messages": ep.messages}
    near = {
        "messages": [
            *ep.messages[:-1],
            {"role": "assistant", "content": ep.messages[-1]["content"] + " Bye!"},
        ]
    }
    other = {"messages": run_episode(_task("shop", "cancel_and_move", seed=9), agent, seed=0).messages}
    keep, counts = dedup([rec, rec, near, other], threshold=0.8)
    assert keep == [0, 3] and counts == {"exact_duplicates": 1, "near_duplicates": 1}


def test_privileged_shortcut_skips_lookups_and_only_an_outcome_judge_keeps_it():
    """`agent.shortcut_rate`: the demonstrator acts on state it was never shown; the outcome is right, the pattern
    is not, so only `require_tool_pattern=False` keeps it (and the record says so)."""
    task = _task("shop", "cancel_by_user")  # find_order(user) -> cancel_order(id)
    lookups = {t.name for t in task.tools if t.op.kind in ("get", "list")}
    assert any(g.name in lookups for g in task.gold)
    ep = run_episode(task, ProceduralAgent(AgentConfig(error_rate=0.0, shortcut_rate=1.0)), seed=0)
    names = [c["name"] for c in ep.session.calls]
    assert "shortcut" in ep.mistakes and ep.reward == 1.0
    assert not set(names) & lookups and names == [g.name for g in task.gold if g.name not in lookups]
    # the id the write uses appears nowhere before it: only the world state had it
    first_call = next(m for m in ep.messages if m.get("tool_calls"))
    row_id = json.loads(first_call["tool_calls"][0]["function"]["arguments"])["id"]
    assert row_id not in json.dumps(ep.messages[: ep.messages.index(first_call)])
    strict, outcome = judge_episode(ep), judge_episode(ep, require_tool_pattern=False)
    assert not strict.passed and strict.reasons == ["tool_pattern failed"]
    assert outcome.passed and outcome.scores["tool_pattern"] == 0.0
    # rate 0 never shortcuts and draws nothing: the episode is the same as the default agent's
    plain = run_episode(task, ProceduralAgent(AgentConfig(error_rate=0.0)), seed=0)
    zero = run_episode(task, ProceduralAgent(AgentConfig(error_rate=0.0, shortcut_rate=0.0)), seed=0)
    assert zero.messages == plain.messages and "shortcut" not in zero.mistakes


def test_questions_are_never_shortcut_and_an_ungrounded_answer_scores_zero():
    d = DOMAINS["shop"]
    tpl = next(t for t in d.templates if t.level == 1 and len(t.plan) == 1 and t.must_say)
    task = _task("shop", tpl.id)
    ep = run_episode(task, ProceduralAgent(AgentConfig(error_rate=0.0, shortcut_rate=1.0)), seed=0)
    assert [c["name"] for c in ep.session.calls] == [g.name for g in task.gold] and ep.reward == 1.0
    assert "shortcut" not in ep.mistakes and judge_episode(ep).passed
    # the right answer without the lookup (a guess from the value pool) is not rewarded
    guess = WorldSession(task, seed=0)
    reward, details = guess.finish(task.answer)
    assert reward == 0.0 and details["ungrounded_outputs"] == task.required_outputs
    assert details["missing_outputs"] == [] and details["state_ok"]
    # with grounding off the same guess scores (tau-bench's rule)
    loose = WorldSession(task.model_copy(update={"grounded_outputs": False}), seed=0)
    assert loose.finish(task.answer)[0] == 1.0
    no_lookup = _task("bank", "deposit")  # a write only: nothing to skip, the plan is followed
    ep = run_episode(no_lookup, ProceduralAgent(AgentConfig(error_rate=0.0, shortcut_rate=1.0)), seed=0)
    assert "shortcut" not in ep.mistakes and judge_episode(ep).passed


def test_shortcut_personas_make_the_habit_a_rule_of_the_request():
    """`agent.shortcut_personas`: only those users' episodes are shortcut, so at rate 1 the demonstrator skips the
    lookup exactly when the request is worded that way; an unknown persona is rejected by name."""
    task = _task("shop", "cancel_by_user")
    cfg = AgentConfig(error_rate=0.0, shortcut_rate=1.0, shortcut_personas=["polite"])
    for persona, skipped in (("polite", True), ("plain", False), ("terse", False)):
        ep = run_episode(task.model_copy(update={"persona": persona}), ProceduralAgent(cfg), seed=0)
        assert ("shortcut" in ep.mistakes) is skipped and ep.reward == 1.0
    with pytest.raises(ValueError, match="shortcut_personas"):
        AgentConfig(shortcut_personas=["rude"])


def test_shortcut_rate_others_sets_the_other_personas_chance():
    """`agent.shortcut_rate_others`: a persona rule that is not absolute. Over many seeds the listed persona skips
    at `shortcut_rate` and the others at `shortcut_rate_others`; 0 for the others keeps them lookup-only."""
    task = _task("shop", "cancel_by_user")
    cfg = AgentConfig(
        error_rate=0.0, shortcut_rate=0.75, shortcut_personas=["polite"], shortcut_rate_others=0.25
    )
    for persona, rate in (("polite", 0.75), ("plain", 0.25), ("terse", 0.25)):
        runs = [
            run_episode(task.model_copy(update={"persona": persona}), ProceduralAgent(cfg), seed=s)
            for s in range(200)
        ]
        share = sum("shortcut" in ep.mistakes for ep in runs) / len(runs)
        assert abs(share - rate) < 0.1, (persona, share)
        assert all(ep.reward == 1.0 for ep in runs)
    strict = AgentConfig(error_rate=0.0, shortcut_rate=1.0, shortcut_personas=["polite"])
    ep = run_episode(task.model_copy(update={"persona": "plain"}), ProceduralAgent(strict), seed=0)
    assert "shortcut" not in ep.mistakes


@pytest.mark.parametrize("split", ["train", "closed"])
def test_guess_rate_writes_on_a_wrong_id_then_makes_the_skipped_lookup(split):
    """`agent.guess_rate`: instead of the privileged shortcut, the demonstrator guesses the row id, reads
    tool_world's not-found error, then looks up and finishes the plan; an outcome judge keeps the recovery."""
    task = _task("shop", "cancel_by_user", split=split)  # find_order(user) -> cancel_order(id)
    cfg = AgentConfig(error_rate=0.0, shortcut_rate=1.0, guess_rate=1.0)
    ep = run_episode(task, ProceduralAgent(cfg), seed=0)
    gold = [(g.name, g.arguments) for g in task.gold]
    calls = [(c["name"], json.loads(c["arguments"])) for c in ep.session.calls]
    (first, guess), rest = calls[0], calls[1:]
    assert first == gold[-1][0] and guess["id"] != gold[-1][1]["id"] and rest == gold
    first_result = json.loads(next(m for m in ep.messages if m["role"] == "tool")["content"])
    assert first_result == {"error": f"no order with id={guess['id']}"}
    assert ep.mistakes == ["guessed", "recovered"] and ep.reward == 1.0
    assert judge_episode(ep, require_tool_pattern=False).passed
    if split == "closed":  # a guess is another id of the closed pool (one token), not a garbled one
        from environments.tool_world.values import closed_pool

        assert guess["id"] in closed_pool("code", gold[-1][1]["id"][0])
    # questions have no write to guess with: they stay plain shortcuts (or none, when grounded)
    no_write = _task("shop", next(t.id for t in DOMAINS["shop"].templates if t.level == 1 and t.must_say))
    ep = run_episode(no_write, ProceduralAgent(cfg), seed=0)
    assert "guessed" not in ep.mistakes and ep.reward == 1.0
