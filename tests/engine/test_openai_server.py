"""Server mode: `vllm serve` + the token-in/token-out completions client; a dead server fails fast (slow)."""

from __future__ import annotations

import socket
import time

import pytest

from agentrl.engine.base import EngineError, SamplingSpec

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_engine_token_ids_logprobs_and_fast_failure(tmp_path):
    import torch

    from agentrl.engine.openai_server import OpenAIServerEngine, VLLMServer
    from model.checkpoint import init_checkpoint, load_checkpoint

    path = init_checkpoint("k2-tiny", tmp_path / "ck", seed=0)
    server = VLLMServer(
        path, port=free_port(), kv_cache_memory_bytes=128 * 1024**2, log_path=tmp_path / "vllm.log"
    )
    server.start(timeout_s=600)
    try:
        engine = OpenAIServerEngine(server.url, timeout_s=60)
        prompts = [[1, 5, 100 + i, 7] for i in range(3)]
        specs = [
            SamplingSpec(temperature=t, max_tokens=n, seed=0) for t, n in [(0.7, 5), (1.0, 9), (1.3, 12)]
        ]
        gens = engine.generate(prompts, specs)
        assert [len(g.token_ids) for g in gens] == [
            5,
            9,
            12,
        ]  # per-request max tokens (random model: no stop)
        model, _ = load_checkpoint(path, dtype=torch.float32)
        with torch.no_grad():
            for p, g, s in zip(prompts, gens, specs, strict=True):
                lp = torch.log_softmax(model(torch.tensor([p + g.token_ids])).logits[0] / s.temperature, -1)
                ref = [lp[len(p) + j - 1, t].item() for j, t in enumerate(g.token_ids)]
                assert max(abs(a - b) for a, b in zip(ref, g.logprobs, strict=True)) < 1e-3
    finally:
        server.stop()
    start = time.monotonic()
    with pytest.raises(EngineError, match="unreachable|did not answer"):
        engine.generate(prompts[:1], specs[:1])
    assert time.monotonic() - start < 30
