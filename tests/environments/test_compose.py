"""Compose smoke test: `docker-compose up -d`, open a session in each environment, tear down.

Needs a docker engine and the images (CI builds them in .ci/prepare.d/30-docker-images.sh; locally
`bash docker/build_base_image.sh && docker-compose build`). Fails in CI when docker is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from environments.protocol import Action, EnvClient, ToolCall
from tests.environments.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _compose_cmd() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    return None


def _engine_up() -> bool:
    return (
        shutil.which("docker") is not None
        and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    )


@pytest.fixture(scope="module")
def stack():
    compose = _compose_cmd()
    if compose is None or not _engine_up():
        msg = "no docker engine / docker-compose (see .ci/prepare.d/20-docker.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    ports = {name: free_port() for name in ("code", "reasoning", "tool_world", "api")}
    env = {
        **os.environ,
        "AGENTRL_CODE_PORT": str(ports["code"]),
        "AGENTRL_REASONING_PORT": str(ports["reasoning"]),
        "AGENTRL_TOOL_WORLD_PORT": str(ports["tool_world"]),
        "AGENTRL_API_PORT": str(ports["api"]),
        "AGENTRL_ENV_TOKEN": "smoke-token",
    }
    base = [*compose, "-p", f"agentrl-smoke-{os.getpid()}", "-f", str(ROOT / "compose.yaml")]

    def run(*args: str, timeout: float = 900) -> None:
        out = subprocess.run(
            [*base, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert out.returncode == 0, f"{' '.join(args)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"

    if subprocess.run(
        ["docker", "image", "inspect", "agentrl/base:bookworm"], capture_output=True
    ).returncode:
        subprocess.run(["bash", str(ROOT / "docker/build_base_image.sh")], check=True, timeout=900)
    run("build")
    try:
        run("up", "-d", timeout=300)
        urls = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
        deadline = time.monotonic() + 180
        pending = set(urls)
        while pending and time.monotonic() < deadline:
            for k in list(pending):
                try:
                    if httpx.get(urls[k] + "/health", timeout=2).status_code == 200:
                        pending.discard(k)
                except httpx.TransportError:
                    pass
            time.sleep(1)
        if pending:
            logs = subprocess.run(
                [*base, "logs", "--tail", "50"], cwd=ROOT, env=env, capture_output=True, text=True
            )
            pytest.fail(f"services not healthy: {pending}\n{logs.stdout[-4000:]}")
        yield urls
    finally:
        run("down", "-v", "--remove-orphans", timeout=300)


def test_code_env_runs_jailed_code_in_docker(stack):
    with EnvClient(stack["code"], token="smoke-token", timeout=60) as env:
        obs = env.reset("add-two")
        call = ToolCall(
            id="1", name="run_python", arguments=json.dumps({"code": "import os; print(6 * 7, os.getuid())"})
        )
        out = env.step(obs.session_id, Action(tool_calls=[call])).messages[0].content
        assert "status: ok" in out and "42 61" in out, out  # ran in a bwrap jail as a sandbox uid
        r = env.step(obs.session_id, Action(final_answer="def add(a, b):\n    return a + b"))
        assert r.reward == 1.0


def test_reasoning_env_in_docker(stack):
    with EnvClient(stack["reasoning"], token="smoke-token") as env:
        obs = env.reset({"question": "2+2?", "answer": "4"})
        assert env.step(obs.session_id, Action(final_answer="<answer>4</answer>")).reward == 1.0
    assert httpx.get(stack["reasoning"] + "/metadata").status_code == 401  # the token is enforced


def test_tool_world_env_in_docker(stack):
    with EnvClient(stack["tool_world"], token="smoke-token") as env:
        obs = env.reset(seed=0)
        assert obs.tools and obs.messages
        call = ToolCall(id="1", name="no_such_tool", arguments="{}")
        r = env.step(obs.session_id, Action(tool_calls=[call]))
        assert r.messages and r.messages[0].role == "tool"


def test_rollout_api_in_docker(stack):
    assert httpx.get(stack["api"] + "/health", timeout=5).status_code == 200
