"""`agentrl synth rephrase`: chunking, prompt diversity, the real MiniLM fidelity check, rejection counting, the
judge, the offline skip and the CLI.

The endpoint here is a real HTTP server speaking the OpenAI chat API, scripted so that what it returns can be
asserted (a faithful rewrite = the source with a short lead-in; an off-topic text for sources that carry the marker
OFFTOPIC; a judge verdict that depends on the marker LOWSCORE). The run against a real vLLM server that serves the
tiny checkpoint is in test_rephrase_vllm.py.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest
from fastapi import FastAPI, Request
from typer.testing import CliRunner

from agentrl.cli.main import app as cli_app
from agentrl.errors import AgentRLError, ConfigError
from agentrl.rewards.openai_client import ChatClientConfig
from agentrl.synth.fidelity import EmbeddingFidelity, JudgeFidelity
from agentrl.synth.rephrase import run_rephrase
from agentrl.synth.rephrase_chunks import split_chunks
from agentrl.synth.rephrase_config import RephraseConfig
from agentrl.synth.rephrase_docs import load_documents
from agentrl.synth.rephrase_prompts import (
    MATH_STYLES,
    RewritePlan,
    chunk_messages,
    looks_like_math,
    plan_rewrites,
)
from agentrl.train.sft import read_jsonl
from tests.servers import serve_app

MITO = (
    "The mitochondrion is an organelle found in most eukaryotic cells. It produces most of the cell's supply "
    "of adenosine triphosphate (ATP), which is used as a source of chemical energy."
)
MITO_PARAPHRASE = (
    "Most eukaryotic cells contain mitochondria, organelles that generate the bulk of the cell's adenosine "
    "triphosphate (ATP), the molecule cells use as chemical energy."
)
MITO_NOTES = (
    "- Mitochondria: organelles present in most eukaryotic cells.\n- They make most of a cell's ATP "
    "(adenosine triphosphate).\n- ATP serves as the cell's source of chemical energy."
)
WESTPHALIA = (
    "The Peace of Westphalia, signed in 1648, ended the Thirty Years' War and laid down principles of state "
    "sovereignty that shaped European diplomacy for centuries."
)
GIBBERISH = "qz vlorp ##ka 17 ttrek brammel snoo wekk ,, ]] ozzle quib quib"

LONG_DOC = "\n\n".join(
    [
        "Photosynthesis is the process by which green plants convert light energy into chemical energy. "
        "It takes place mainly in the chloroplasts of leaf cells.",
        "During the light-dependent reactions, chlorophyll absorbs sunlight and water molecules are split, "
        "releasing oxygen as a by-product and producing ATP and NADPH.",
        "In the Calvin cycle, the ATP and NADPH drive the fixation of carbon dioxide into sugars. The enzyme "
        "RuBisCO catalyses the first major step of carbon fixation.",
    ]
)


@pytest.fixture(scope="module")
def fidelity() -> EmbeddingFidelity:
    return EmbeddingFidelity(min_similarity=0.7)


def test_split_chunks_keeps_order_words_and_limits() -> None:
    text = LONG_DOC + "\n\n" + " ".join(["Averyveryverylongword" * 3] + ["filler sentence here."] * 30)
    chunks = split_chunks(text, 160)
    assert len(chunks) > 4
    assert all(0 < len(c) <= 160 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())  # nothing lost or reordered
    assert split_chunks("one short paragraph.\n\nanother.", 1000) == ["one short paragraph.\n\nanother."]
    assert split_chunks("   \n\n ", 100) == []


def test_plans_are_style_and_perspective_diverse() -> None:
    plans = plan_rewrites(10, math=False, rng=random.Random(0))
    assert len({p.id for p in plans}) == 10  # ten distinct (style, perspective) pairs
    assert len({p.style.id for p in plans}) >= 3 and len({p.perspective.id for p in plans}) >= 3
    other = plan_rewrites(10, math=False, rng=random.Random(1))
    assert [p.id for p in plans] != [p.id for p in other]  # seeded, not fixed
    prompts = {
        chunk_messages(
            p, MITO, index=0, total=1, title="Mitochondrion", previous_rewrite=None, context_chars=0
        )[1]["content"]
        for p in plans
    }
    assert len(prompts) == 10
    math = plan_rewrites(3, math=True, rng=random.Random(0))
    assert {p.style for p in math} <= set(MATH_STYLES) and all(p.perspective is None for p in math)
    assert "learning note" in math[0].style.instruction


def test_math_detection() -> None:
    assert looks_like_math(r"Theorem. For all $n$, $\sum_{k=1}^n k = n(n+1)/2$. Proof by induction.")
    assert not looks_like_math(MITO)


def test_chunk_prompt_carries_previous_rewrite() -> None:
    plan = plan_rewrites(1, math=False, rng=random.Random(0))[0]
    first = chunk_messages(plan, "A", index=0, total=2, title="T", previous_rewrite=None, context_chars=50)
    assert "<previous_rewrite>" not in first[1]["content"]
    second = chunk_messages(
        plan, "B", index=1, total=2, title="T", previous_rewrite="x" * 100 + "TAIL", context_chars=50
    )
    body = second[1]["content"]
    assert "TAIL" in body and "x" * 51 not in body  # only the tail, as configured
    assert body.index("<previous_rewrite>") < body.index("<source>\nB\n</source>")


def test_embedding_fidelity_on_real_text(fidelity: EmbeddingFidelity) -> None:
    good = fidelity.check(MITO, MITO_PARAPHRASE)
    notes = fidelity.check(MITO, MITO_NOTES)
    off = fidelity.check(MITO, WESTPHALIA)
    junk = fidelity.check(MITO, GIBBERISH)
    assert good.ok and good.value > 0.8, good
    assert notes.ok, notes  # a change of style is still faithful
    assert not off.ok and off.reason == "low_similarity" and off.value < 0.3, off
    assert not junk.ok and junk.value < 0.3, junk
    long_sim = fidelity.similarity(LONG_DOC * 3, LONG_DOC * 3)  # windowed embedding of a long text
    assert long_sim == pytest.approx(1.0, abs=1e-4)


def _source(body: dict[str, Any]) -> str:
    m = re.search(r"<source>\n(.*?)\n</source>", body["messages"][-1]["content"], re.S)
    assert m, body
    return m.group(1)


def scripted_app() -> FastAPI:
    app = FastAPI()
    app.state.bodies = []

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": "policy", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict:
        body = await request.json()
        app.state.bodies.append(body)
        if "response_format" in body:  # the fidelity judge
            score = 2 if "LOWSCORE" in body["messages"][-1]["content"] else 9
            text = json.dumps({"verdicts": {"rephrase.fidelity": {"reason": "checked", "score": score}}})
        else:
            src = _source(body)
            text = WESTPHALIA if "OFFTOPIC" in src else f"Put differently: {src}"
        return {
            "id": "x",
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20},
        }

    return app


@pytest.fixture(scope="module")
def endpoint():
    app = scripted_app()
    with serve_app(app) as (url, _):
        yield url + "/v1", app


def _write_docs(path, docs: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return str(path)


def test_run_rephrase_chunks_autoregressively_and_counts_rejections(
    endpoint, fidelity, tmp_path, tiny_checkpoint
) -> None:
    url, app = endpoint
    app.state.bodies.clear()
    docs = [
        {"id": "photo", "title": "Photosynthesis", "text": LONG_DOC},
        {"id": "bad", "text": MITO + "\n\n" + "OFFTOPIC " + MITO},  # 2nd chunk comes back off-topic
        {"id": "sum", "kind": "math", "text": "The sum of the first n odd numbers is n squared."},
    ]
    cfg = RephraseConfig(
        backend="endpoint",
        inputs=[_write_docs(tmp_path / "docs.jsonl", docs)],
        out_dir=str(tmp_path / "out"),
        endpoint=ChatClientConfig(base_url=url, model="policy", max_concurrency=2),
        rephrasings=2,
        chunk={"max_chars": 200},
        fidelity={"attempts_per_chunk": 2},
    )
    lines: list[str] = []
    stats = run_rephrase(cfg, echo=lines.append, fidelity=fidelity)

    # autoregressive: every later chunk's prompt holds the rewrite returned for the chunk before it
    photo = [b for b in app.state.bodies if "Document: Photosynthesis" in b["messages"][-1]["content"]]
    chunks = split_chunks(LONG_DOC, 200)
    assert len(chunks) == 3 and len(photo) == 3 * 2
    for body in photo:
        prompt = body["messages"][-1]["content"]
        i = chunks.index(_source(body))
        if i == 0:
            assert "<previous_rewrite>" not in prompt
        else:
            assert f"<previous_rewrite>\nPut differently: {chunks[i - 1]}\n</previous_rewrite>" in prompt

    # rejections: 'bad' fails at its 2nd chunk, twice (attempts_per_chunk) for each of its 2 rephrasings
    assert stats["rephrasings_tried"] == 6 and stats["accepted"] == 4 and stats["rejected_rephrasings"] == 2
    assert stats["chunk_rewrites_rejected"] == 4 and stats["rejections_by_reason"] == {"low_similarity": 4}
    assert stats["chunk_attempts"] == 3 * 2 + (1 + 2) * 2 + 1 * 2
    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert {(r["doc_id"], r["chunk"]) for r in rejected} == {("bad", 1)} and len(rejected) == 4
    assert all(r["similarity"] < 0.7 for r in rejected)
    assert len(lines) == 1 and "4/6 rephrasings" in lines[0] and "4 of" in lines[0]

    # output: SFT/PTX-format records, two distinct plans per document, math as learning notes
    records = read_jsonl(stats["files"]["rephrased"])
    assert len(records) == 4
    for r in records:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"] and r["tools"] == []
        assert r["provenance"]["backend"] == "endpoint"
        assert all(s >= 0.7 for s in r["provenance"]["fidelity"]["similarities"])
    by_doc: dict[str, list[dict]] = {}
    for r in records:
        by_doc.setdefault(r["source_id"], []).append(r)
    assert len({(r["style"], r["perspective"]) for r in by_doc["photo"]}) == 2
    assert all(r["kind"] == "math" and r["style"] in {s.id for s in MATH_STYLES} for r in by_doc["sum"])
    photo_text = by_doc["photo"][0]["messages"][1]["content"]
    assert photo_text.count("Put differently:") == 3  # all three chunks, in order
    assert photo_text.index("Photosynthesis is") < photo_text.index("Calvin cycle")
    assert stats["endpoint"]["requests"] == len(app.state.bodies)
    # usable as PTX / SFT data: the K2 chat template trains on the rephrased document only
    from transformers import AutoTokenizer

    from agentrl.train.ptx import ptx_examples_from_records

    tok = AutoTokenizer.from_pretrained(tiny_checkpoint)
    examples = ptx_examples_from_records(records, tok, max_length=4096)
    assert len(examples) == 4
    for ex, rec in zip(examples, records, strict=True):
        trained = tok.decode([t for t, m in zip(ex.token_ids, ex.loss_mask, strict=True) if m])
        assert rec["messages"][1]["content"] in trained and rec["messages"][0]["content"] not in trained
    assert json.loads((tmp_path / "out" / "stats.json").read_text())["accepted"] == 4


def test_judge_fidelity_accepts_and_rejects(endpoint) -> None:
    url, _ = endpoint
    judge = JudgeFidelity(ChatClientConfig(base_url=url, model="policy"), min_score=7)
    try:
        ok = judge.check(MITO, MITO_PARAPHRASE)
        bad = judge.check("LOWSCORE " + MITO, MITO_PARAPHRASE)
    finally:
        judge.close()
    assert ok.ok and ok.value == 9
    assert not bad.ok and bad.reason == "judge_rejected" and bad.value == 2


def test_judge_rejections_are_counted_by_reason(endpoint, fidelity, tmp_path) -> None:
    url, _ = endpoint
    docs = [{"id": "a", "text": MITO}, {"id": "b", "text": "LOWSCORE " + MITO}]
    cfg = RephraseConfig(
        backend="endpoint",
        inputs=[_write_docs(tmp_path / "d.jsonl", docs)],
        out_dir=str(tmp_path / "out"),
        endpoint=ChatClientConfig(base_url=url, model="policy"),
        fidelity={"judge": True, "attempts_per_chunk": 1},
    )
    stats = run_rephrase(cfg, echo=None, fidelity=fidelity)
    assert stats["accepted"] == 1 and stats["rejections_by_reason"] == {"judge_rejected": 1}
    assert stats["judge"]["scored"] == 2
    rec = read_jsonl(stats["files"]["rephrased"])[0]
    assert rec["source_id"] == "a" and rec["provenance"]["fidelity"]["judge_scores"] == [9.0]


def test_offline_default_skips_in_one_line() -> None:
    lines: list[str] = []
    result = run_rephrase(RephraseConfig(), echo=lines.append)
    assert result["skipped"] is True and len(lines) == 1 and "skipped" in lines[0]
    runner = CliRunner()
    plain = runner.invoke(cli_app, ["synth", "rephrase", "-c", "configs/rephrase.yaml"])
    assert plain.exit_code == 0 and len(plain.output.strip().splitlines()) == 1, plain.output
    assert "rephrase: skipped" in plain.output
    as_json = runner.invoke(cli_app, ["synth", "rephrase", "--json", "seed=3"])
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout.strip().splitlines()[-1])["skipped"] is True


def test_cli_errors_and_plain_synth_overrides(tmp_path) -> None:
    runner = CliRunner()
    bad_key = runner.invoke(cli_app, ["synth", "rephrase", "chunk.size=3"])
    assert bad_key.exit_code == 2 and "chunk has no field 'size'" in bad_key.output
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n')
    missing = runner.invoke(
        cli_app, ["synth", "rephrase", "backend=endpoint", f"inputs=[{broken}]", "endpoint.base_url=http://x"]
    )
    assert missing.exit_code == 2 and f"{broken}:2: broken JSONL line" in missing.output
    # `agentrl synth key=value` still goes to the tool-use pipeline's config
    synth_bad = runner.invoke(cli_app, ["synth", "targett=3"])
    assert synth_bad.exit_code == 2 and "known: agent, backend" in synth_bad.output


def test_unreachable_endpoint_and_empty_inputs(tmp_path) -> None:
    doc = tmp_path / "a.md"
    doc.write_text("# Heading\n\nSome text.")
    cfg = RephraseConfig(
        backend="endpoint",
        inputs=[str(doc)],
        endpoint=ChatClientConfig(base_url="http://127.0.0.1:9/v1"),
        probe_timeout_s=1,
        out_dir=str(tmp_path / "o"),
    )
    with pytest.raises(AgentRLError, match="127.0.0.1:9/v1/models is unreachable"):
        run_rephrase(cfg, echo=None)
    assert load_documents([str(doc)])[0].title == "Heading"
    with pytest.raises(ConfigError, match="no documents to rephrase"):
        run_rephrase(cfg.model_copy(update={"inputs": []}), echo=None)


def test_plan_id_format() -> None:
    plan = RewritePlan(style=MATH_STYLES[0], perspective=None, math=True)
    assert plan.id == "learning_note"
