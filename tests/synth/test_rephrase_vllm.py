"""`agentrl synth rephrase` end to end against a real vLLM OpenAI server serving the tiny K2 checkpoint.

The tiny checkpoint is random-init, so its rewrites are gibberish: this asserts that the pipeline runs over real
HTTP, that the real MiniLM fidelity check rejects the gibberish and counts it, and that every output file is
well formed (records in the SFT/PTX format, rejections with their reasons). Quality is not asserted.
"""

from __future__ import annotations

import json
import os

import pytest

from agentrl.rewards.openai_client import ChatClientConfig
from agentrl.synth.rephrase import run_rephrase
from agentrl.synth.rephrase_config import RephraseConfig
from agentrl.train.sft import read_jsonl
from tests.conftest import require_vllm
from tests.servers import free_port

pytestmark = pytest.mark.slow

DOCS = [
    {
        "id": "tides",
        "title": "Tides",
        "text": "Tides are the rise and fall of sea levels caused by the gravity of the Moon and the Sun.\n\n"
        "Most coasts see two high tides and two low tides each lunar day.",
    },
    {"id": "odd", "kind": "math", "text": "The sum of the first n odd numbers equals n squared."},
]


@pytest.fixture(scope="module")
def vllm_url(tiny_checkpoint: str, tmp_path_factory: pytest.TempPathFactory):
    """`.../v1` of one real vLLM server for this module (or AGENTRL_TEST_VLLM_URL)."""
    url = os.environ.get("AGENTRL_TEST_VLLM_URL")
    if url:
        yield url
        return
    require_vllm()
    from agentrl.engine.openai_server import VLLMServer

    log = tmp_path_factory.mktemp("vllm") / "server.log"
    server = VLLMServer(
        tiny_checkpoint,
        port=free_port(),
        kv_cache_memory_bytes=128 * 1024**2,
        extra_args=["--served-model-name", "k2-tiny"],
        log_path=log,
    )
    server.start(timeout_s=900)
    try:
        yield server.url + "/v1"
    finally:
        server.stop()


def test_rephrase_against_real_vllm(vllm_url: str, tmp_path) -> None:
    inputs = tmp_path / "docs.jsonl"
    inputs.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    cfg = RephraseConfig(
        backend="endpoint",
        inputs=[str(inputs)],
        out_dir=str(tmp_path / "out"),
        endpoint=ChatClientConfig(
            base_url=vllm_url,
            model="k2-tiny",
            max_tokens=24,
            temperature=1.0,
            timeout_s=120,
            max_concurrency=2,
        ),
        rephrasings=2,
        chunk={"max_chars": 120, "context_chars": 120},
        fidelity={"attempts_per_chunk": 2},
    )
    lines: list[str] = []
    stats = run_rephrase(cfg, echo=lines.append)

    assert stats["skipped"] is False and stats["documents"] == 2 and stats["math_documents"] == 1
    assert stats["rephrasings_tried"] == 4
    # every chunk got an answer from vLLM (no call failures), and the gibberish was rejected by fidelity
    assert stats["endpoint"]["requests"] == stats["chunk_attempts"] > 0
    assert stats["endpoint"]["completion_tokens"] > 0 and stats["endpoint"]["errors"] == {}
    assert stats["rejections_by_reason"].get("low_similarity", 0) >= 1
    assert not any(r.startswith("call_failed") for r in stats["rejections_by_reason"])
    assert stats["accepted"] + stats["rejected_rephrasings"] == 4
    assert stats["chunk_rewrites_rejected"] == sum(stats["rejections_by_reason"].values())

    rejected = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == stats["chunk_rewrites_rejected"]
    for r in rejected:
        assert r["doc_id"] in {"tides", "odd"} and r["reason"]
        if r["reason"] == "low_similarity":
            assert r["similarity"] < cfg.fidelity.min_similarity
    out = (tmp_path / "out" / "rephrased.jsonl").read_text()
    if stats["accepted"]:  # unlikely with a random model, but then the records must be well formed
        for rec in read_jsonl(stats["files"]["rephrased"]):
            assert [m["role"] for m in rec["messages"]] == ["user", "assistant"]
    else:
        assert out == ""
    assert json.loads((tmp_path / "out" / "stats.json").read_text()) == json.loads(json.dumps(stats))
    assert len(lines) == 1 and lines[0].startswith("rephrase: ")
