"""The agent loop on real vLLM: the trainer scores exactly the engine's tokens, with matching logprobs."""

from __future__ import annotations

import random

import pytest
import torch

from agentrl.engine.base import SamplingSpec
from agentrl.rollout.agent_loop import AgentLoop, LoopConfig
from agentrl.rollout.envs import LocalEnv
from agentrl.rollout.episode import EpisodeSpec
from agentrl.rollout.warmstart import SET_VALUE_TOOL, ShortKV, kv_task
from model.chat_format import render_messages

pytestmark = pytest.mark.slow
TEMPERATURE = 0.9


class Recording:
    """Wraps the real engine's continuous-batching interface and records each request's prompt and output (to
    count mismatches), and whether each request joined while others were already mid-generation."""

    def __init__(self, engine) -> None:
        self.engine, self.calls, self.in_flight, self.steps, self.joined_mid_generation = (
            engine,
            [],
            {},
            0,
            [],
        )

    def submit(self, request_id, prompt, sampling):
        self.joined_mid_generation.append(any(step < self.steps for _, step in self.in_flight.values()))
        self.in_flight[request_id] = (list(prompt), self.steps)
        self.engine.submit(request_id, prompt, sampling)

    def step(self):
        self.steps += 1
        finished = self.engine.step()
        for request_id, g in finished:
            prompt, _ = self.in_flight.pop(request_id)
            self.calls.append((prompt, list(g.token_ids), list(g.logprobs)))
        return finished

    def num_unfinished(self):
        return self.engine.num_unfinished()

    def load_weights(self, named_tensors):
        return self.engine.load_weights(named_tensors)


@pytest.fixture(scope="module")
def rollout(tool_ckpt):
    from transformers import AutoTokenizer

    from agentrl.engine.vllm_engine import VLLMEngine

    tok = AutoTokenizer.from_pretrained(tool_ckpt)
    engine = Recording(VLLMEngine(tool_ckpt, kv_cache_memory_bytes=256 * 1024**2))
    rng = random.Random(1)
    tasks: list[dict] = []
    while len(tasks) < 32:  # distinct tasks -> distinct prompts, so each engine call maps to one episode
        task = kv_task(rng)
        if task not in tasks:
            tasks.append(task)
    env = LocalEnv(ShortKV)
    sampling = [SamplingSpec(temperature=TEMPERATURE, max_tokens=300, seed=i) for i in range(len(tasks))]
    specs = [EpisodeSpec(task=task, env=env, sampling=s) for task, s in zip(tasks, sampling, strict=True)]
    trajs = AgentLoop(engine, tok, LoopConfig(max_turn_tokens=128, max_turns=6)).run(specs)
    return tok, engine, trajs


def test_requests_join_a_running_batch(rollout):
    """Continuous batching is exercised: later turns join while other requests are mid-generation, instead of
    waiting for every episode's turn to end."""
    _, engine, trajs = rollout
    assert len(engine.calls) == len(engine.joined_mid_generation) and not engine.in_flight
    assert sum(engine.joined_mid_generation) >= 8, engine.joined_mid_generation
    # the warm-started fixture really uses its tool (else these are single-turn text answers)
    assert sum(t.num_tool_calls for t in trajs) >= len(trajs) // 2


def test_trainer_scores_exactly_the_engine_tokens(rollout):
    tok, engine, trajs = rollout
    assert sum(t.num_turns >= 2 for t in trajs) >= 1, (
        "no multi-turn episode: the test would not cover turn chaining"
    )
    mismatches = checked = 0
    for t in trajs:
        # every engine call's prompt is a prefix of the stored sequence and its output follows it verbatim
        for prompt, out, lps in engine.calls:
            if len(prompt) < t.prompt_len or t.token_ids[: len(prompt)] != prompt:
                continue
            checked += 1
            n = len(prompt)
            mismatches += t.token_ids[n : n + len(out)] != out
            mismatches += t.logprobs[n : n + len(out)] != lps
            mismatches += any(m != 1 for m in t.loss_mask[n : n + len(out)])
        # mask-0 tokens are exactly the non-generated ones; the prompt is the template's rendering
        first = render_messages(t.messages[:2], tools=[SET_VALUE_TOOL], add_generation_prompt=True)
        mismatches += t.token_ids[: t.prompt_len] != tok(first, add_special_tokens=False)["input_ids"]
        generated = sum(
            len(out) for p, out, _ in engine.calls if t.token_ids[: len(p)] == p and len(p) >= t.prompt_len
        )
        mismatches += sum(t.loss_mask) != generated
    assert checked >= len(trajs) and mismatches == 0


def max_gap(trajs, ckpt) -> tuple[float, float]:
    from model.checkpoint import load_checkpoint

    model, _ = load_checkpoint(ckpt, dtype=torch.float32)
    model.eval()
    gaps = []
    with torch.no_grad():
        for t in trajs:
            logits = model(torch.tensor([t.token_ids])).logits[0]
            lp = torch.log_softmax(logits / TEMPERATURE, -1)  # the trainer's rule: log_softmax(logits / T)
            for i, (m, stored) in enumerate(zip(t.loss_mask, t.logprobs, strict=True)):
                if m:
                    gaps.append(abs(lp[i - 1, t.token_ids[i]].item() - stored))
    return max(gaps), sum(gaps) / len(gaps)


def test_stored_logprobs_match_a_trainer_forward(tiny_ckpt):
    """On the random-init checkpoint: the loop's stored logprobs equal a transformers forward on token_ids."""
    from transformers import AutoTokenizer

    from agentrl.engine.vllm_engine import VLLMEngine

    tok = AutoTokenizer.from_pretrained(tiny_ckpt)
    engine = VLLMEngine(tiny_ckpt, kv_cache_memory_bytes=128 * 1024**2)
    rng = random.Random(2)
    specs = [
        EpisodeSpec(
            task=kv_task(rng),
            env=LocalEnv(ShortKV),
            sampling=SamplingSpec(temperature=TEMPERATURE, max_tokens=64, seed=i),
        )
        for i in range(8)
    ]
    trajs = AgentLoop(engine, tok, LoopConfig(max_turn_tokens=32)).run(specs)
    worst, mean = max_gap(trajs, tiny_ckpt)
    assert worst < 1e-3 and mean < 1e-4


def test_trained_policy_logprobs_match_a_trainer_forward(rollout, tool_ckpt):
    _, _, trajs = rollout
    worst, mean = max_gap(trajs, tool_ckpt)
    assert worst < 1e-3 and mean < 1e-4
