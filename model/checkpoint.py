"""Checkpoints in Hugging Face format: config.json + model.safetensors + tokenizer files + chat template.

`AutoModelForCausalLM.from_pretrained(path)` loads them and vLLM serves them. `generation_config.json` lists
`<|im_end|>` as an end-of-sequence id so generation stops at the end of an assistant turn in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentrl.errors import AgentRLError
from model.special_tokens import EOS, IM_END


def align_config_to_tokenizer(config: Any, tokenizer: Any) -> Any:
    """Set the special-token ids of `config` from `tokenizer`; the embedding must hold every token id."""
    if len(tokenizer) > config.vocab_size:
        raise AgentRLError(
            f"tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {config.vocab_size}; "
            "train a smaller tokenizer or raise model vocab_size"
        )
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.convert_tokens_to_ids(IM_END)
    config.pad_token_id = tokenizer.pad_token_id
    return config


def build_model(preset: str, tokenizer: Any, seed: int = 0, dtype: Any = None, **overrides: Any):
    """A randomly initialised `DeepseekV3ForCausalLM` for `preset`, aligned to `tokenizer`."""
    import torch
    from transformers import DeepseekV3ForCausalLM

    from model.presets import build_config

    config = align_config_to_tokenizer(build_config(preset, **overrides), tokenizer)
    torch.manual_seed(seed)
    model = DeepseekV3ForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    return model


def save_checkpoint(model: Any, tokenizer: Any, out_dir: str | Path) -> Path:
    """Write model, tokenizer and generation config to `out_dir` (HF format, safetensors)."""
    from transformers import GenerationConfig

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    if getattr(model.config, "tie_word_embeddings", False):
        _write_tied_lm_head(model, out)
    else:
        # a stale copy would override the real lm_head in vLLM
        (out / TIED_LM_HEAD_FILE).unlink(missing_ok=True)
    tokenizer.save_pretrained(out)
    gen = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.convert_tokens_to_ids(IM_END), tokenizer.convert_tokens_to_ids(EOS)],
        pad_token_id=tokenizer.pad_token_id,
    )
    gen.save_pretrained(out)
    return out


TIED_LM_HEAD_FILE = "tied-lm_head.safetensors"


def _write_tied_lm_head(model: Any, out: Path) -> None:
    """Also store `lm_head.weight` for a model with tied embeddings.

    transformers drops the tied copy on save, and vLLM's DeepseekV3 ignores `tie_word_embeddings`: it would serve
    an uninitialised lm_head. vLLM reads every `*.safetensors` file of an unsharded checkpoint (and the index of a
    sharded one, which gets the entry); transformers reads `model.safetensors` (or the index) and re-ties.
    """
    import json

    from safetensors.torch import save_file

    save_file(
        {"lm_head.weight": model.get_output_embeddings().weight.detach().contiguous()},
        out / TIED_LM_HEAD_FILE,
    )
    index = out / "model.safetensors.index.json"
    if index.is_file():
        data = json.loads(index.read_text())
        data["weight_map"]["lm_head.weight"] = TIED_LM_HEAD_FILE
        index.write_text(json.dumps(data, indent=2))


def load_checkpoint(path: str | Path, dtype: Any = None):
    """Load (model, tokenizer) from an agentrl/HF checkpoint directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise AgentRLError(f"not a checkpoint directory (no config.json): {path}")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model, tokenizer


def init_checkpoint(preset: str, out_dir: str | Path, seed: int = 0, tokenizer: Any = None) -> Path:
    """Write a random-init checkpoint of `preset` (with the default tokenizer unless one is given)."""
    from model.tokenizer import default_corpus, train_tokenizer

    if tokenizer is None:
        from model.presets import PRESETS

        if preset not in PRESETS:
            raise AgentRLError(f"unknown model preset {preset!r}")
        tokenizer = train_tokenizer(default_corpus(), vocab_size=min(PRESETS[preset]["vocab_size"], 2048))
    model = build_model(preset, tokenizer, seed=seed)
    return save_checkpoint(model, tokenizer, out_dir)
