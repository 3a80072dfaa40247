"""`agentrl synth rephrase`: K2's knowledge rephrasing, as extra SFT / PTX records.

K2 §2 (k2.md §1 "data") enlarges high-quality knowledge text by rephrasing it: style- and perspective-diverse
prompts, chunk-wise autoregressive rewriting of long documents (each chunk is rewritten with the rewritten chunk
before it in context), a fidelity check of every chunk against its source, and learning-note rewriting for math.
Each accepted rephrasing becomes one chat record, `{"messages": [user request, assistant = rephrased document],
"tools": []}`, the format `agentrl sft` and the RL stage's PTX set read (agentrl/train/sft.py, ptx.py).

Deviations: K2 used rephrased text in pre-training, we use it to enlarge the SFT/PTX sets (issue #5 item 6). K2's
prompts and fidelity model are unpublished: the prompts are ours (rephrase_prompts.py) and fidelity is MiniLM
embedding similarity plus an optional LLM judge (fidelity.py). K2 also translated math; we do not. A chunk whose
rewrites all fail the check rejects that rephrasing of the document (a rephrasing with a hole would drop facts);
every failed attempt is counted by reason.

The endpoint is any OpenAI-compatible chat server (vLLM or a provider), reached through the same client as the
judge (retries, timeouts, token accounting). The offline default `backend: none` skips the stage with one line.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentrl.errors import ConfigError
from agentrl.rewards.openai_client import ChatClient, ChatError
from agentrl.synth.fidelity import EmbeddingFidelity, JudgeFidelity
from agentrl.synth.rephrase_chunks import split_chunks
from agentrl.synth.rephrase_config import RephraseConfig
from agentrl.synth.rephrase_docs import Document, load_documents
from agentrl.synth.rephrase_prompts import (
    RewritePlan,
    chunk_messages,
    looks_like_math,
    plan_rewrites,
    record_request,
)

GENERATOR = "agentrl.synth.rephrase/1"
SKIP_MESSAGE = (
    "rephrase: skipped: backend=none (the offline default); rephrasing needs an LLM, so set backend=endpoint "
    "endpoint.base_url=URL endpoint.model=NAME inputs=[FILE]"
)


@dataclass
class Outcome:
    """One rephrasing of one document: the record if every chunk passed, and every rejected attempt."""

    record: dict[str, Any] | None
    chunks: int
    attempts: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    truncated: int = 0


class Rephraser:
    """Rewrites documents chunk by chunk through a chat endpoint and checks each chunk's fidelity. Thread-safe."""

    def __init__(
        self,
        cfg: RephraseConfig,
        client: ChatClient,
        fidelity: EmbeddingFidelity,
        judge: JudgeFidelity | None = None,
    ) -> None:
        self.cfg, self.client, self.fidelity, self.judge = cfg, client, fidelity, judge

    def is_math(self, doc: Document) -> bool:
        if self.cfg.math != "auto":
            return self.cfg.math == "always"
        return doc.kind == "math" if doc.kind is not None else looks_like_math(doc.text)

    def plans(self, doc: Document) -> list[RewritePlan]:
        """The document's rephrasings: seeded by (seed, document id), so reruns and reorderings agree."""
        rng = random.Random(f"{self.cfg.seed}:{doc.id}")
        return plan_rewrites(self.cfg.rephrasings, self.is_math(doc), rng)

    def _attempt(self, messages: list[dict[str, Any]], source: str) -> tuple[str | None, dict[str, Any]]:
        """One rewrite of one chunk; (text, info) when it passes, (None, info with `reason`) when not."""
        try:
            result = self.client.chat(messages)
        except ChatError as exc:
            return None, {"reason": f"call_failed:{exc.reason}"}
        text = result.text.strip()
        truncated = result.finish_reason == "length"
        if not text:
            return None, {"reason": "empty", "truncated": truncated}
        emb = self.fidelity.check(source, text)
        info: dict[str, Any] = {"similarity": emb.value, "truncated": truncated, "text": text[:300]}
        if not emb.ok:
            return None, {**info, "reason": emb.reason}
        if truncated:  # cut off mid-rewrite: the rest of the chunk's facts are missing
            return None, {**info, "reason": "truncated"}
        if self.judge is not None:
            verdict = self.judge.check(source, text)
            info["judge_score"] = verdict.value
            if not verdict.ok:
                return None, {**info, "reason": verdict.reason}
        return text, info

    def rephrase(self, doc: Document, plan: RewritePlan, k: int) -> Outcome:
        """Rephrasing number `k` of `doc`; each chunk's prompt carries the accepted rewrite of the one before."""
        cfg = self.cfg
        chunks = split_chunks(doc.text, cfg.chunk.max_chars)
        out = Outcome(record=None, chunks=len(chunks))
        rewritten: list[str] = []
        sims: list[float] = []
        scores: list[float] = []
        for i, chunk in enumerate(chunks):
            messages = chunk_messages(
                plan, chunk, index=i, total=len(chunks), title=doc.title,
                previous_rewrite=rewritten[-1] if rewritten else None, context_chars=cfg.chunk.context_chars,
            )  # fmt: skip
            accepted = None
            for attempt in range(cfg.fidelity.attempts_per_chunk):
                out.attempts += 1
                text, info = self._attempt(messages, chunk)
                out.truncated += bool(info.get("truncated"))
                if text is not None:
                    accepted = text
                    sims.append(info["similarity"])
                    if "judge_score" in info:
                        scores.append(info["judge_score"])
                    break
                out.rejections.append(
                    {
                        "doc_id": doc.id,
                        "rephrasing": k,
                        "plan": plan.id,
                        "chunk": i,
                        "attempt": attempt,
                        **info,
                    }
                )
            if accepted is None:
                return out
            rewritten.append(accepted)
        out.record = {
            "id": f"rephrase-{cfg.seed}-{doc.id}-{k}",
            "messages": [
                {"role": "user", "content": record_request(plan, doc.title)},
                {"role": "assistant", "content": "\n\n".join(rewritten)},
            ],
            "tools": [],
            "source_id": doc.id,
            "kind": "math" if plan.math else "knowledge",
            "style": plan.style.id,
            "perspective": plan.perspective.id if plan.perspective else None,
            "split": "train",
            "num_chunks": len(chunks),
            "provenance": {
                "generator": GENERATOR,
                "seed": cfg.seed,
                "backend": "endpoint",
                "model": cfg.endpoint.model,
                "source": doc.source,
                "fidelity": {
                    "min_similarity": cfg.fidelity.min_similarity,
                    "similarities": sims,
                    "judge_scores": scores if self.judge is not None else None,
                },
            },
        }
        return out


def _probe(cfg: RephraseConfig, client: ChatClient) -> None:
    from agentrl.synth.config import BackendConfig
    from agentrl.synth.roles import EndpointRoles

    backend = BackendConfig(default="endpoint", endpoint=cfg.endpoint, probe_timeout_s=cfg.probe_timeout_s)
    EndpointRoles(backend, client=client).probe()


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def run_rephrase(
    config: RephraseConfig | dict[str, Any],
    echo: Callable[[str], None] | None = print,
    *,
    fidelity: EmbeddingFidelity | None = None,
) -> dict[str, Any]:
    """Rephrase every input document; write rephrased.jsonl, rejected.jsonl and stats.json; return the stats.

    `fidelity` lets a caller share one loaded embedding model across runs (tests do)."""
    cfg = config if isinstance(config, RephraseConfig) else RephraseConfig.model_validate(config)
    if cfg.backend == "none":
        if echo is not None:
            echo(SKIP_MESSAGE)
        return {
            "skipped": True,
            "backend": "none",
            "reason": SKIP_MESSAGE.removeprefix("rephrase: skipped: "),
        }
    t0 = time.perf_counter()
    docs = load_documents(cfg.inputs, cfg.max_documents)
    if not docs:
        raise ConfigError(f"no documents to rephrase in inputs={cfg.inputs}: give JSONL, .txt or .md files")
    client = ChatClient(cfg.endpoint)
    judge = None
    try:
        _probe(cfg, client)
        fidelity = fidelity or EmbeddingFidelity(cfg.fidelity.min_similarity, cfg.fidelity.model_path)
        fidelity.min_similarity = cfg.fidelity.min_similarity
        fidelity.embed(["warm-up"])  # load the model now: a missing package fails before any endpoint call
        if cfg.fidelity.judge:
            judge = JudgeFidelity(cfg.fidelity.judge_endpoint or cfg.endpoint, cfg.fidelity.judge_min_score)
        rephraser = Rephraser(cfg, client, fidelity, judge)
        jobs = [(d, plan, k) for d in docs for k, plan in enumerate(rephraser.plans(d))]
        with ThreadPoolExecutor(cfg.endpoint.max_concurrency) as pool:
            outcomes = list(pool.map(lambda j: rephraser.rephrase(*j), jobs))
        usage = client.stats.as_dict()
        judge_stats = judge.stats() if judge is not None else None
    finally:
        client.close()
        if judge is not None:
            judge.close()
    records = [o.record for o in outcomes if o.record is not None]
    rejections = [r for o in outcomes for r in o.rejections]
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "rephrased": out / "rephrased.jsonl",
        "rejected": out / "rejected.jsonl",
        "stats": out / "stats.json",
    }
    _write_jsonl(files["rephrased"], records)
    _write_jsonl(files["rejected"], rejections)
    sims = [s for r in records for s in r["provenance"]["fidelity"]["similarities"]]
    stats = {
        "skipped": False,
        "generator": GENERATOR,
        "seed": cfg.seed,
        "backend": "endpoint",
        "model": cfg.endpoint.model,
        "documents": len(docs),
        "math_documents": sum(rephraser.is_math(d) for d in docs),
        "rephrasings_tried": len(jobs),
        "accepted": len(records),
        "rejected_rephrasings": len(jobs) - len(records),
        "acceptance_rate": round(len(records) / max(1, len(jobs)), 4),
        "chunks": sum(o.chunks for o in outcomes),
        "chunk_attempts": sum(o.attempts for o in outcomes),
        "chunk_rewrites_rejected": len(rejections),
        "rejections_by_reason": dict(Counter(r["reason"] for r in rejections).most_common()),
        "truncated_rewrites": sum(o.truncated for o in outcomes),
        "similarity_mean_accepted": round(sum(sims) / len(sims), 4) if sims else None,
        "plans_used": dict(Counter(f"{r['style']}/{r['perspective']}" for r in records)),
        "endpoint": usage,
        "judge": judge_stats,
        "files": {k: str(v) for k, v in files.items()},
        "wall_s": round(time.perf_counter() - t0, 3),
    }
    files["stats"].write_text(json.dumps(stats, indent=2))
    if echo is not None:
        echo(format_report(stats))
    return stats


def format_report(stats: dict[str, Any]) -> str:
    return (
        f"rephrase: {stats['accepted']}/{stats['rephrasings_tried']} rephrasings of {stats['documents']} documents "
        f"accepted ({stats['math_documents']} as math learning notes) in {stats['wall_s']:.1f}s; "
        f"{stats['chunk_rewrites_rejected']} of {stats['chunk_attempts']} chunk rewrites rejected "
        f"{stats['rejections_by_reason']}; wrote {stats['files']['rephrased']}"
    )
