"""`EngineCritic`: the policy judges pairs through the real vLLM engine, by forced choice between the letters."""

from __future__ import annotations

import pytest
import torch

from agentrl.rewards.critic_prompt import CriticPromptConfig, build_critic_messages
from agentrl.rewards.engine_critic import EngineCritic

pytest.importorskip("vllm")

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


@pytest.mark.slow
def test_engine_verdicts_are_the_policys_argmax_letter(tiny_checkpoint, repo_rubrics):
    from transformers import AutoTokenizer

    from agentrl.engine.vllm_engine import VLLMEngine
    from model.checkpoint import load_checkpoint

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    engine = VLLMEngine(tiny_checkpoint, max_model_len=1024, kv_cache_memory_bytes=128 * 1024**2)
    batch = pairs(repo_rubrics, 6)
    critic = EngineCritic(engine, tok, max_prompt_tokens=1023)
    verdicts = critic(batch)
    assert set(verdicts) <= {"[[A]]", "[[B]]"} and None not in verdicts

    model, _ = load_checkpoint(tiny_checkpoint, dtype=torch.float32)
    by_letter = {v: k for k, v in critic.choices.items()}
    with torch.no_grad():
        for messages, verdict in zip(batch, verdicts, strict=True):
            logits_V = model(input_ids=torch.tensor([critic.prompt_ids(messages)])).logits[0, -1]
            best = "A" if logits_V[by_letter["A"]] > logits_V[by_letter["B"]] else "B"
            assert verdict == f"[[{best}]]"

    tight = EngineCritic(engine, tok, max_prompt_tokens=len(critic.prompt_ids(batch[0])) + 1)
    out = tight(batch)  # longer responses push the later prompts over the limit: they abstain
    assert out[0] == verdicts[0] and None in out
    assert tight.metrics()["critic/too_long"] == out.count(None) > 0
