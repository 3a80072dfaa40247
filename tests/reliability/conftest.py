"""Shared fixtures of the reliability suite: the small trained tokenizer used by the agent-loop cases."""

from __future__ import annotations

import os
import shutil

import pytest

TOKEN = "rel-secret-" + "q7" * 16


@pytest.fixture(scope="session")
def tok():
    from model.tokenizer import default_corpus, train_tokenizer

    return train_tokenizer(default_corpus(), vocab_size=2048)


def need_tool(name: str) -> None:
    """Skip without a system tool, except in CI (env CI set), where a missing tool is a failure."""
    if shutil.which(name) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required in CI but not installed")
        pytest.skip(f"{name} not installed")
