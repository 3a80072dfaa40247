"""Closed-loop critic refinement: the verdict labels reach the right tokens, and training on them moves the
policy-as-critic's forced choice (as `EngineCritic` asks it) to the verified-better sample.

Whether a given policy can learn to *generalise* the preference is an empirical question measured by the demo's
held-out critic accuracy, not asserted here: a random-init k2-tiny does not learn the content-dependent verdict
on a handful of pairs in a test's budget."""

from __future__ import annotations

import pytest
import torch

from agentrl.rewards.critic_data import build_critic_examples
from agentrl.rewards.critic_prompt import CriticPromptConfig
from agentrl.rewards.engine_critic import EngineCritic
from agentrl.schemas.trajectory import Trajectory
from agentrl.train.aux_loss import CriticRefinementLoss
from agentrl.train.ptx import tokenize_chat


@pytest.fixture(scope="module")
def repo_rubrics():
    from agentrl.rewards.rubrics import load_rubrics

    return load_rubrics()


COMPACT = CriticPromptConfig(instructions="brief", rubric_detail="names", max_response_chars=200)


def _traj(tid: str, group: str, answer: str, reward: float) -> Trajectory:
    return Trajectory(
        id=tid,
        task_id=f"task-{group}",
        group_id=group,
        messages=[
            {"role": "user", "content": f"Please close order {group}."},
            {"role": "assistant", "content": answer},
        ],
        reward_details={"verifiable": reward},
    )


def rollouts(n_groups: int) -> list[Trajectory]:
    out = []
    for g in range(n_groups):
        out.append(_traj(f"{g}-good", f"O{g}", f"Order O{g} is closed.", 1.0))
        out.append(_traj(f"{g}-bad", f"O{g}", "Sorry, something went wrong.", 0.0))
    return out


def test_critic_loss_targets_exactly_the_verdict_tokens(tiny_checkpoint, repo_rubrics):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    examples = build_critic_examples(rollouts(2), repo_rubrics, prompt=COMPACT)
    assert {e.target for e in examples} == {"A", "B"}
    loss = CriticRefinementLoss(lambda: list(examples), tok, beta=1.0, batch_size=2, max_tokens=4096)
    loss.refresh()
    critic = EngineCritic(engine=None, tokenizer=tok, max_prompt_tokens=4096)
    for ex, tokenized in zip(examples, loss.buffer, strict=True):
        prompt = critic.prompt_ids(ex.messages)  # what the engine critic scores: chat + "[["
        trained = [t for t, m in zip(tokenized.token_ids, tokenized.loss_mask, strict=True) if m]
        # The engine's prompt is the trained sequence's prefix; the first trained token after it is the letter.
        assert tokenized.token_ids[: len(prompt)] == prompt
        letter_id = tokenized.token_ids[len(prompt)]
        assert critic.choices[letter_id] == ex.target
        assert letter_id in trained


def letter_prob(model, critic: EngineCritic, messages, letter: str) -> float:
    ids = torch.tensor([critic.prompt_ids(messages)])
    with torch.no_grad():
        probs_V = model(input_ids=ids).logits[0, -1].softmax(-1)
    by_letter = {v: k for k, v in critic.choices.items()}
    return float(probs_V[by_letter[letter]] / (probs_V[by_letter["A"]] + probs_V[by_letter["B"]]))


@pytest.mark.parametrize("verdict_loss", ["nll", "letter_margin"])
@pytest.mark.parametrize("order", [0, 1])
def test_refinement_moves_the_forced_choice_to_the_verified_verdict(
    tiny_checkpoint, repo_rubrics, order, verdict_loss
):
    """Training on one refinement example (better sample shown as A, or as B) makes the engine critic's forced
    choice pick the verified-better sample: the loss reaches the letter the critic is scored on."""
    from transformers import AutoTokenizer

    from model.checkpoint import load_checkpoint

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model, _ = load_checkpoint(tiny_checkpoint, dtype=torch.float32)
    example = build_critic_examples(rollouts(1), repo_rubrics, prompt=COMPACT)[order]
    critic = EngineCritic(engine=None, tokenizer=tok, max_prompt_tokens=4096)
    before = letter_prob(model, critic, example.messages, example.target)
    loss = CriticRefinementLoss(
        lambda: [example], tok, beta=1.0, batch_size=1, max_tokens=4096, verdict_loss=verdict_loss
    )
    loss.refresh()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(15):
        opt.zero_grad()
        loss.loss(model, *loss.next_batch()).backward()
        opt.step()
    after = letter_prob(model, critic, example.messages, example.target)
    assert 0.2 < before < 0.8  # random init: no preference between the letters
    assert after > 0.95


def test_letter_margin_is_minus_log_sigmoid_of_the_critics_margin(tiny_checkpoint, repo_rubrics):
    """The `letter_margin` loss of a batch is the mean of -log sigmoid(+/-(logit A - logit B)) at the end of the
    prompt the engine critic scores, signed by the verdict: it trains exactly the margin the critic decides by."""
    from transformers import AutoTokenizer

    from model.checkpoint import load_checkpoint

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model, _ = load_checkpoint(tiny_checkpoint, dtype=torch.float32)
    examples = build_critic_examples(rollouts(2), repo_rubrics, prompt=COMPACT)
    loss = CriticRefinementLoss(
        lambda: list(examples), tok, beta=1.0, batch_size=4, max_tokens=4096, verdict_loss="letter_margin"
    )
    loss.refresh()
    loss.rng.seed(0)
    batch = loss.next_batch()
    loss.rng.seed(0)
    picked = [loss.rng.randrange(len(examples)) for _ in range(4)]
    critic = EngineCritic(engine=None, tokenizer=tok, max_prompt_tokens=4096)
    expected = []
    with torch.no_grad():
        got = float(loss.loss(model, *batch))
        for i in picked:
            ex = examples[i]
            logits_V = model(input_ids=torch.tensor([critic.prompt_ids(ex.messages)])).logits[0, -1]
            margin = logits_V[critic.letter_ids["A"]] - logits_V[critic.letter_ids["B"]]
            expected.append(float(torch.nn.functional.softplus(-margin if ex.target == "A" else margin)))
    assert got == pytest.approx(sum(expected) / len(expected), rel=1e-4)
    ids, attn, mask = batch
    with pytest.raises(ValueError, match="exactly one verdict letter"):
        loss.loss(model, ids, attn, torch.zeros_like(mask))  # a row whose verdict is not under the mask


def test_buffer_keeps_the_newest_and_state_round_trips(tiny_checkpoint, repo_rubrics):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    batches = [build_critic_examples(rollouts(2), repo_rubrics, prompt=COMPACT) for _ in range(3)]
    feed = iter(batches)
    loss = CriticRefinementLoss(
        lambda: next(feed), tok, beta=0.5, batch_size=3, max_tokens=4096, buffer_size=5
    )
    loss.refresh()
    loss.refresh()
    assert len(loss.buffer) == 5 and loss.seen == 8
    state = loss.state_dict()
    a = loss.next_batch()
    clone = CriticRefinementLoss(lambda: [], tok, beta=0.5, batch_size=3, max_tokens=4096, buffer_size=5)
    clone.load_state_dict(state)
    b = clone.next_batch()
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    too_short = CriticRefinementLoss(lambda: batches[2], tok, beta=0.5, batch_size=3, max_tokens=20)
    too_short.refresh()
    assert too_short.buffer == [] and too_short.too_long == len(batches[2])
    assert too_short.next_batch() is None


def test_warm_examples_are_trained_on_before_any_rollout_and_then_make_room(tiny_checkpoint, repo_rubrics):
    """`add` (the demo's `critic.refine_synth_pairs`) fills the buffer before the first drain; on-policy examples
    then push the oldest warm ones out."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    warm = build_critic_examples(rollouts(2), repo_rubrics, prompt=COMPACT)
    fresh = build_critic_examples(rollouts(1), repo_rubrics, prompt=COMPACT)
    loss = CriticRefinementLoss(
        lambda: list(fresh), tok, beta=0.5, batch_size=2, max_tokens=4096, buffer_size=4
    )
    assert loss.next_batch() is None
    loss.add(warm)
    assert len(loss.buffer) == 4 and loss.seen == 4 and loss.next_batch() is not None
    first_warm = loss.buffer[0]
    loss.refresh()
    assert len(loss.buffer) == 4 and loss.seen == 6
    assert all(kept is not first_warm for kept in loss.buffer)
    assert loss.buffer[-len(fresh) :] == [tokenize_chat(e.sft_record()["messages"], tok) for e in fresh]
