"""The service image copies only agentrl/{__init__,errors,body_limit}.py, agentrl/schemas and services/
(services/Dockerfile): those files alone must import and build the app, with torch unimportable
(architecture.md: import rule).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import agentrl, services
assert agentrl.__file__.startswith(sys.argv[1]), agentrl.__file__
assert services.__file__.startswith(sys.argv[1]), services.__file__
from services.rollout_api.app import create_app
from services.rollout_api.client import RolloutClient
app = create_app(sys.argv[1] + "/data/rollout.db", token="t", reap_interval_s=0)
assert "transformers" not in sys.modules and "vllm" not in sys.modules
print("ok", len(app.routes))
"""


def test_image_file_set_imports_without_torch(tmp_path: Path) -> None:
    (tmp_path / "agentrl").mkdir()
    for f in ("__init__.py", "errors.py", "body_limit.py"):
        shutil.copy(ROOT / "agentrl" / f, tmp_path / "agentrl" / f)
    shutil.copytree(ROOT / "agentrl" / "schemas", tmp_path / "agentrl" / "schemas")
    shutil.copytree(ROOT / "services", tmp_path / "services", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
