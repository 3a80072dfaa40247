"""`EngineCritic`: the policy judges pairs through the real vLLM engine: forced choice between the letters, and the
swap-debiased rule that adds both orders' A-vs-B log-prob margins."""

from __future__ import annotations

import pytest
import torch

from agentrl.rewards.critic_data import critic_accuracy
from agentrl.rewards.critic_prompt import CriticPromptConfig, build_critic_messages, swap_key
from agentrl.rewards.engine_critic import EngineCritic, swap_debiased_letters

COMPACT = CriticPromptConfig(instructions="brief", rubric_detail="names", max_response_chars=200)


def pairs(repo_rubrics, n: int) -> list[list[dict]]:
    rubrics = repo_rubrics.for_task(None, None)
    out = []
    for i in range(n):
        prompt = [{"role": "user", "content": f"Close order O{i}."}]
        a = {"messages": [*prompt, {"role": "assistant", "content": f"Order O{i} is closed."}]}
        b = {"messages": [*prompt, {"role": "assistant", "content": "Sorry, that failed." * (i + 1)}]}
        out.append(build_critic_messages(prompt, a, b, rubrics, COMPACT))
    return out


def both_orders(repo_rubrics, n: int) -> tuple[list[list[dict]], list[str]]:
    """Each pair in both orders (x as A, then as B); pair keys for `critic_accuracy`."""
    rubrics = repo_rubrics.for_task(None, None)
    batch, keys = [], []
    for i in range(n):
        prompt = [{"role": "user", "content": f"Close order O{i}."}]
        x = {"messages": [*prompt, {"role": "assistant", "content": f"Order O{i} is closed."}]}
        y = {"messages": [*prompt, {"role": "assistant", "content": "Sorry, that failed." * (i + 1)}]}
        batch += [
            build_critic_messages(prompt, x, y, rubrics, COMPACT),
            build_critic_messages(prompt, y, x, rubrics, COMPACT),
        ]
        keys += [f"p{i}", f"p{i}"]
    return batch, keys


def test_swap_key_pairs_the_two_orders_of_one_comparison(repo_rubrics):
    batch, _ = both_orders(repo_rubrics, 3)
    keys = [swap_key(m) for m in batch]
    assert all(k is not None for k in keys)
    for i in range(0, 6, 2):
        assert keys[i][0] == keys[i + 1][0] and keys[i][1] != keys[i + 1][1]
    assert len({k[0] for k in keys}) == 3  # different pairs never share a key
    assert swap_key([{"role": "user", "content": "hi"}]) is None
    assert swap_key([batch[0][0], {"role": "user", "content": "# Conversation\nno responses"}]) is None


def test_swap_debiasing_cancels_a_position_prior_that_forced_choice_cannot():
    """A critic leaning +3 nats toward position A, with a 1-nat content signal for the better sample: forced choice
    says A every time (accuracy 0.5); adding the two orders' margins recovers every pair."""
    margins, keys, truth, pair_keys = [], [], [], []
    for p, x_better in enumerate([True, False, True, True, False]):
        content = 1.0 if x_better else -1.0  # preference for x
        key = ("sys", f"conv{p}", "rx", "ry")
        margins += [3.0 + content, 3.0 - content]  # x shown as A, then y shown as A
        keys += [(key, True), (key, False)]
        truth += ["A" if x_better else "B", "B" if x_better else "A"]
        pair_keys += [f"p{p}", f"p{p}"]
    forced = ["A" if m > 0 else "B" for m in margins]
    assert critic_accuracy(forced, truth, pair_keys).accuracy == 0.5
    debiased, alone = swap_debiased_letters(margins, keys)
    acc = critic_accuracy(debiased, truth, pair_keys)
    assert alone == 0 and acc.accuracy == 1.0 and acc.order_consistency == 1.0
    # No partner in the batch, an abstention, and the same response twice:
    lone, alone = swap_debiased_letters(
        [-2.0, None, 5.0], [(("s", "c", "a", "b"), True), None, (("s", "c", "a", "a"), True)]
    )
    assert lone == ["B", None, "tie"] and alone == 1


@pytest.mark.slow
def test_engine_margins_match_transformers_and_debiased_verdicts_are_order_consistent(
    tiny_checkpoint, repo_rubrics
):
    """vLLM's A-vs-B margin (`candidate_token_ids`) equals the HF model's log-softmax difference at the verdict
    position, and the swap-debiased verdicts name the same sample in both orders."""
    pytest.importorskip("vllm")
    from transformers import AutoTokenizer

    from agentrl.engine.vllm_engine import VLLMEngine
    from model.checkpoint import load_checkpoint

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    engine = VLLMEngine(tiny_checkpoint, max_model_len=1024, kv_cache_memory_bytes=128 * 1024**2)
    batch, pair_keys = both_orders(repo_rubrics, 4)
    critic = EngineCritic(engine, tok, max_prompt_tokens=1023)
    margins = critic.margins(batch)
    model, _ = load_checkpoint(tiny_checkpoint, dtype=torch.float32)
    a, b = critic.letter_ids["A"], critic.letter_ids["B"]
    with torch.no_grad():
        for messages, margin in zip(batch, margins, strict=True):
            lp_V = torch.log_softmax(
                model(input_ids=torch.tensor([critic.prompt_ids(messages)])).logits[0, -1], -1
            )
            assert margin == pytest.approx(float(lp_V[a] - lp_V[b]), abs=1e-3)
    # The continuous-batching path (`submit`/`step`) reports the same candidate log-probs as `generate`.
    from agentrl.engine.base import SamplingSpec

    spec = SamplingSpec(temperature=0.0, max_tokens=1, candidate_token_ids=(a, b))
    engine.submit("r0", critic.prompt_ids(batch[0]), spec)
    done = []
    while engine.num_unfinished():
        done += engine.step()
    ((rid, gen),) = done
    stepped = gen.extra["candidate_logprobs"][0]
    assert rid == "r0" and stepped[a] - stepped[b] == pytest.approx(margins[0], abs=1e-4)
    verdicts = critic(batch)
    truth = ["A", "B"] * 4  # any fixed labels: consistency does not depend on them
    acc = critic_accuracy(verdicts, truth, pair_keys)
    assert None not in verdicts and acc.order_consistency == 1.0
    assert critic.metrics()["critic/unpaired"] == 0.0


@pytest.mark.slow
def test_engine_forced_verdicts_are_the_policys_argmax_letter(tiny_checkpoint, repo_rubrics):
    pytest.importorskip("vllm")
    from transformers import AutoTokenizer

    from agentrl.engine.vllm_engine import VLLMEngine
    from model.checkpoint import load_checkpoint

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    engine = VLLMEngine(tiny_checkpoint, max_model_len=1024, kv_cache_memory_bytes=128 * 1024**2)
    batch = pairs(repo_rubrics, 6)
    critic = EngineCritic(engine, tok, max_prompt_tokens=1023, verdict="forced")
    verdicts = critic(batch)
    assert set(verdicts) <= {"[[A]]", "[[B]]"} and None not in verdicts

    model, _ = load_checkpoint(tiny_checkpoint, dtype=torch.float32)
    by_letter = {v: k for k, v in critic.choices.items()}
    with torch.no_grad():
        for messages, verdict in zip(batch, verdicts, strict=True):
            logits_V = model(input_ids=torch.tensor([critic.prompt_ids(messages)])).logits[0, -1]
            best = "A" if logits_V[by_letter["A"]] > logits_V[by_letter["B"]] else "B"
            assert verdict == f"[[{best}]]"

    tight = EngineCritic(
        engine, tok, max_prompt_tokens=len(critic.prompt_ids(batch[0])) + 1, verdict="forced"
    )
    out = tight(batch)  # longer responses push the later prompts over the limit: they abstain
    assert out[0] == verdicts[0] and None in out
    assert tight.metrics()["critic/too_long"] == out.count(None) > 0
