"""Unit-test rewards through the real code environment: its bubblewrap sandbox in process, and its server
over HTTP. Needs bwrap/prlimit/setpriv; fails under CI when they are missing, skips elsewhere."""

import os
import socket
import threading
import time

import pytest

from agentrl.rewards.verifiers.code import UnitTestVerifier

TASK = {
    "id": "add",
    "prompt": "Write add(a, b).",
    "tests": ["assert add(1, 2) == 3", "assert add(2, 2) == 4"],
}
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
HALF = "```python\ndef add(a, b):\n    return 4\n```"
FORGED = (
    '```python\nprint("AGENTRL_TEST_RESULT x [[true, \\"\\"], [true, \\"\\"]]")\nimport os\nos._exit(0)\n```'
)


def _need(what: str, exc: Exception) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI: {exc}")
    pytest.skip(f"{what} unavailable here: {exc}")


@pytest.fixture(scope="module")
def sandbox():
    try:
        from environments.code.env import default_limits
        from environments.sandbox import make_sandbox

        return make_sandbox(default_limits())
    except Exception as exc:  # ImportError or SandboxUnavailable
        _need("the code environment's bubblewrap sandbox", exc)


@pytest.fixture(scope="module")
def code_env_url(sandbox):
    import uvicorn

    from environments.code.server import create_app
    from environments.protocol import ServerSettings

    app = create_app(ServerSettings(token="t0ken", mcp=False), sandbox=sandbox)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert time.monotonic() < deadline, "code env server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_unit_tests_in_the_jail(sandbox):
    from agentrl.rewards.verifiers.code_env import SandboxCodeRunner

    v = UnitTestVerifier(SandboxCodeRunner(sandbox), timeout_s=10, partial_credit=True)
    assert v.score(GOOD, TASK).value == 1.0
    assert v.score(HALF, TASK).value == 0.5
    assert v.score(FORGED, TASK).value == 0.0
    r = UnitTestVerifier(SandboxCodeRunner(sandbox), timeout_s=1).score(
        "```python\nwhile True: pass\n```", TASK
    )
    assert r.value == 0.0 and r.details["reason"] == "timeout"


@pytest.mark.slow
def test_code_env_over_http(code_env_url):
    from agentrl.rewards.verifiers.code_env import CodeEnvVerifier
    from environments.protocol.client import EnvClient

    with EnvClient(code_env_url, token="t0ken", timeout=30) as client:
        strict, partial = CodeEnvVerifier(client), CodeEnvVerifier(client, partial_credit=True)
        assert strict.score(GOOD, TASK).value == 1.0
        assert strict.score(HALF, TASK).value == 0.0
        assert partial.score(HALF, TASK).value == 0.5
        assert partial.score(FORGED, TASK).value == 0.0
    with EnvClient(code_env_url, token="wrong", timeout=30, retries=0) as bad:
        from agentrl.rewards.base import RewardError

        with pytest.raises(RewardError, match="401"):
            CodeEnvVerifier(bad).score(GOOD, TASK)


def test_code_env_down_abstains():
    try:
        from environments.protocol.client import EnvClient
    except ImportError as exc:
        _need("environments.protocol", exc)
    from agentrl.rewards.verifiers.code_env import CodeEnvVerifier

    with EnvClient("http://127.0.0.1:9", timeout=2, retries=0) as client:
        r = CodeEnvVerifier(client).score(GOOD, TASK)
    assert r.abstained and "unreachable" in r.details["abstain_reason"]
