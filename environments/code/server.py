"""`agentrl serve env code`: the code environment server.

The sandbox is probed once at startup. Without working isolation the server still starts (so health and
metadata work) but refuses to execute code, unless AGENTRL_SANDBOX_UNSAFE=1 (logged at CRITICAL).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from environments.code.env import CodeEnv, default_limits, load_tasks
from environments.protocol import ServerSettings, create_env_app
from environments.sandbox import Sandbox, SandboxUnavailable, make_sandbox

log = logging.getLogger(__name__)


def create_app(settings: ServerSettings | None = None, sandbox: Sandbox | None = None) -> FastAPI:
    reason = ""
    if sandbox is None:
        try:
            sandbox = make_sandbox(default_limits())
        except SandboxUnavailable as exc:
            reason = str(exc)
            log.error("code execution disabled: %s", reason)
    tasks = load_tasks()
    app = create_env_app(lambda: CodeEnv(sandbox, reason, tasks), settings)
    app.state.sandbox_mode = sandbox.mode if sandbox else f"disabled: {reason}"
    return app
