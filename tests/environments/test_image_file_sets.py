"""Each env image holds only the files its Dockerfile COPYs: those alone must build the server, without torch.

The file set is read from the Dockerfile itself, so a module the server starts importing (e.g. the shared
`agentrl/body_limit.py`) fails here until the Dockerfile copies it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import importlib
mod = importlib.import_module(sys.argv[2])
assert mod.__file__.startswith(sys.argv[1]), mod.__file__
app = mod.create_app()
assert "transformers" not in sys.modules and "vllm" not in sys.modules
print("ok", len(app.routes))
"""


def _copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not any(p.startswith("--") for p in parts):
            sources += parts[1:-1]
    return sources


@pytest.mark.parametrize("env", ["tool_world", "reasoning", "code"])
def test_env_image_file_set_builds_the_server(env: str, tmp_path: Path) -> None:
    sources = _copy_sources(ROOT / "environments" / env / "Dockerfile")
    assert "agentrl/body_limit.py" in sources
    for src in sources:
        dst = tmp_path / src
        dst.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / src, dst)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path), f"environments.{env}.server"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok")
