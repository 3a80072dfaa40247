"""Environment servers must not need torch: import every env module with torch blocked."""

from __future__ import annotations

import subprocess
import sys

MODULES = [
    "environments.protocol",
    "environments.protocol.demo",
    "environments.sandbox",
    "environments.code.server",
    "environments.reasoning.server",
    "environments.user_sim",
]


def test_env_modules_import_without_torch():
    code = (
        "import sys, importlib\n"
        "sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        f"for m in {MODULES!r}:\n"
        "    importlib.import_module(m)\n"
        "assert 'transformers' not in sys.modules and 'vllm' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
