"""API fuzzing of every FastAPI server (issue 10, item 2): schemathesis from each OpenAPI schema plus hostile
inputs (huge bodies, deep nesting, invalid UTF-8, wrong content types, other sessions' and jobs' ids).

Reduced example counts here; `agentrl bench reliability` runs more. Zero 5xx and `/health` 200 afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from agentrl.reliability.fuzz import fuzz_server
from agentrl.reliability.servers import ALL_SERVERS, build
from tests.reliability.conftest import TOKEN


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_SERVERS)
def test_no_5xx_and_healthy_after_fuzzing(name: str, tmp_path: Path) -> None:
    app, openapi_path = build(name, tmp_path)
    report = fuzz_server(app, name, openapi_path, max_examples=3)
    assert report.cases > 60  # every operation got positive and negative cases, plus the hostile set
    assert report.five_xx == 0, report.failures
    assert report.healthy_after


def test_fuzzing_through_the_auth_layer(tmp_path: Path) -> None:
    """With a token configured the hostile inputs still get 4xx (auth runs before parsing, then the handlers)."""
    from agentrl.reliability.fuzz import FuzzReport, hostile_inputs

    app, _ = build("kv_demo", tmp_path, token=TOKEN)
    report = FuzzReport("kv_demo")
    hostile_inputs(app, "kv_demo", report, {"authorization": f"Bearer {TOKEN}"})
    assert report.cases > 30 and report.five_xx == 0, report.failures
    assert report.healthy_after


def test_regression_huge_policy_version_is_422_not_500(tmp_path: Path) -> None:
    """Found by schemathesis: policy_version 2**64 overflowed the BIGINT column and escaped as a 500."""
    from services.rollout_api.app import create_app
    from tests.services.conftest import job

    app = create_app(str(tmp_path / "r.db"), token="", reap_interval_s=0)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/jobs", json={"jobs": [job(0, policy_version=2**64)]})
        assert r.status_code == 422 and "policy_version" in r.text
        assert c.post("/v1/jobs", json={"jobs": [job(0, policy_version=2**63 - 1)]}).status_code == 200


def test_regression_deeply_nested_tool_arguments_are_a_tool_error_not_500() -> None:
    """Found here: 5000-deep JSON in a tool call's arguments raised RecursionError out of the tool registry."""
    from agentrl.reliability.servers import env_app

    deep = '{"key":' * 5000 + "1" + "}" * 5000
    with TestClient(env_app("kv_demo"), raise_server_exceptions=False) as c:
        sid = c.post("/sessions", json={}).json()["session_id"]
        call = {"id": "a", "name": "set_value", "arguments": deep}
        r = c.post(f"/sessions/{sid}/step", json={"tool_calls": [call]})
    assert r.status_code == 200, r.text
    assert "nested too deeply" in r.json()["messages"][0]["content"]
