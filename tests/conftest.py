"""Shared fixtures: a tiny K2 checkpoint built once per session (random init, default tokenizer)."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(name: str) -> str:
    """Path of a system tool; missing tools fail under CI (where .ci/run installs them) and skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"system tool {name!r} is not installed (CI installs it via .ci/prepare.d)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def require_vllm() -> None:
    """vLLM must import: a failure under CI (which installs it), a skip elsewhere."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"vLLM is required in CI: {exc}")
        pytest.skip(f"vLLM is not installed: {exc}")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> str:
    from model.checkpoint import init_checkpoint

    out = tmp_path_factory.mktemp("ckpt") / "k2-tiny"
    init_checkpoint("k2-tiny", out, seed=0)
    return str(out)
