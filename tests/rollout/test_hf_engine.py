"""`HFEngine` (transformers generate, TRL's path without vLLM) against vLLM and a trainer forward, and under the
agent loop, where it is the rollout benchmark's peer path."""

from __future__ import annotations

import random

import pytest
import torch

from agentrl.engine.base import SamplingSpec
from agentrl.rollout.agent_loop import AgentLoop, LoopConfig
from agentrl.rollout.envs import LocalEnv
from agentrl.rollout.episode import EpisodeSpec
from agentrl.rollout.warmstart import ShortKV, kv_task
from model.chat_format import render_messages
from model.special_tokens import IM_END

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hf(tool_ckpt):
    from agentrl.engine.hf_engine import HFEngine

    return HFEngine.from_checkpoint(tool_ckpt, max_batch=4)


def _prompts(tok, n: int) -> list[list[int]]:
    """Initial prompts of distinct key-value tasks; their lengths differ, so batches are left-padded."""
    rng, prompts = random.Random(3), []
    env = ShortKV()
    while len(prompts) < n:
        obs = env.reset(task_spec=kv_task(rng))
        text = render_messages(
            [m.openai() for m in obs.messages], tools=obs.tools, add_generation_prompt=True
        )
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if ids not in prompts:
            prompts.append(ids)
    assert len({len(p) for p in prompts}) > 1
    return prompts


def test_greedy_tokens_equal_vllm(hf, tool_ckpt):
    """Same tokens as vLLM, greedy, in left-padded batches of 4, with per-request budgets and a stop token."""
    from agentrl.engine.vllm_engine import VLLMEngine

    prompts = _prompts(hf.tokenizer, 8)
    stop = (hf.tokenizer.convert_tokens_to_ids(IM_END),)
    specs = [
        SamplingSpec(temperature=0.0, max_tokens=30 + 40 * (i % 3), stop_token_ids=stop) for i in range(8)
    ]
    ours = hf.generate(prompts, specs)
    ref = VLLMEngine(tool_ckpt, kv_cache_memory_bytes=128 * 1024**2).generate(prompts, specs)
    assert [g.token_ids for g in ours] == [g.token_ids for g in ref]
    assert [g.finish_reason for g in ours] == [g.finish_reason for g in ref]
    assert any(g.finish_reason == "stop" for g in ours) and any(g.finish_reason == "length" for g in ours)
    assert all(len(g.token_ids) <= s.max_tokens for g, s in zip(ours, specs, strict=True))


def test_sampled_logprobs_match_a_trainer_forward(hf):
    """Sampling logprobs are log_softmax(logits / T) of an unpadded forward (the trainer's rule), so left padding
    changes nothing; `ignore_eos` generates exactly max_tokens."""
    prompts = _prompts(hf.tokenizer, 6)
    specs = [SamplingSpec(temperature=0.8, max_tokens=12, ignore_eos=True, seed=i) for i in range(6)]
    gens = hf.generate(prompts, specs)
    gap = 0.0
    with torch.no_grad():
        for p, g in zip(prompts, gens, strict=True):
            assert len(g.token_ids) == 12 and g.finish_reason == "length"
            logits = hf.model(torch.tensor([p + g.token_ids])).logits[0, len(p) - 1 : -1]
            ref = torch.log_softmax(logits / 0.8, -1).gather(1, torch.tensor(g.token_ids)[:, None])[:, 0]
            gap = max(gap, (ref - torch.tensor(g.logprobs)).abs().max().item())
    assert gap < 1e-4


def test_agent_loop_runs_multi_turn_on_hf_generate(hf):
    """The agent loop drives HFEngine (one generate per round, as TRL's tool loop does): episodes call the tool,
    finish, and their stored logprobs equal a trainer forward over the final token sequence."""
    rng = random.Random(4)
    specs = [
        EpisodeSpec(
            task=kv_task(rng),
            env=LocalEnv(ShortKV),
            sampling=SamplingSpec(temperature=0.9, max_tokens=200, seed=i),
        )
        for i in range(6)
    ]
    trajs = AgentLoop(hf, hf.tokenizer, LoopConfig(max_turn_tokens=96, max_turns=4)).run(specs)
    assert sum(t.num_tool_calls for t in trajs) >= 3 and sum(t.num_turns >= 2 for t in trajs) >= 2
    gap = 0.0
    with torch.no_grad():
        for t in trajs:
            lp = torch.log_softmax(hf.model(torch.tensor([t.token_ids])).logits[0] / 0.9, -1)
            for i, (m, stored) in enumerate(zip(t.loss_mask, t.logprobs, strict=True)):
                if m:
                    gap = max(gap, abs(lp[i - 1, t.token_ids[i]].item() - stored))
    assert gap < 1e-4


def test_rollout_bench_runs_both_loops_on_the_same_episodes(tool_ckpt):
    """`agentrl bench rollout --quick` with one round: every key is there and finite, and the HF-generate baseline
    ran the same multi-turn episodes (tool calls, more than one turn on average)."""
    import math

    from agentrl.bench import rollout as bench_rollout

    out = bench_rollout.run(quick=True, rounds_n=1)
    keys = (
        "agentic_tok_s",
        "raw_vllm_tok_s",
        "hf_generate_tok_s",
        "hf_generate_single_turn_tok_s",
        "weight_sync_s",
    )
    assert all(math.isfinite(out[k]) and out[k] > 0 for k in keys)
    assert out["episodes"] == 32 and out["hf_batch"] == 1 and out["rounds"][0]["hf_tokens"] > 0
    assert out["hf_mean_turns"] > 1 and out["mean_turns"] > 1


def test_load_weights_copies_trainer_tensors_in_place(tool_ckpt):
    """Weight sync into HFEngine: checkpoint-named tensors land in the model (the next forward uses them);
    a name the model does not have is refused by name."""
    from agentrl.engine.base import EngineError
    from agentrl.engine.hf_engine import HFEngine
    from model.weights import checkpoint_named_tensors

    engine = HFEngine.from_checkpoint(tool_ckpt)
    halved = [(name, t.detach() * 0.5) for name, t in checkpoint_named_tensors(engine.model)]
    assert any(".experts.0.gate_proj" in name for name, _ in halved)  # per-expert names into fused weights
    stats = engine.load_weights(halved)
    now = dict(checkpoint_named_tensors(engine.model))
    assert all(torch.equal(now[name], t) for name, t in halved) and stats["bytes"] > 0
    with pytest.raises(EngineError, match="not.a.weight"):
        engine.load_weights([("not.a.weight", torch.zeros(1))])
