"""API fuzzing of one FastAPI server: schemathesis cases from its OpenAPI schema, then hand-written hostile inputs.

Schemathesis (PyPI) generates requests for every documented operation, both schema-conforming ("positive")
and schema-violating ("negative") ones, and sends them in-process over ASGI, so the same app object that
`agentrl serve` runs is exercised without a socket. Any 5xx, or an exception escaping the app, counts as a
failure. The hostile inputs add what a schema-driven generator does not produce: multi-megabyte bodies, JSON
nested thousands deep, bytes that are not UTF-8, wrong content types, and ids of other sessions or jobs.
After both, `/health` must still answer 200.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from starlette.testclient import TestClient


@dataclass
class FuzzReport:
    server: str
    cases: int = 0
    five_xx: int = 0
    failures: list[str] = field(default_factory=list)
    healthy_after: bool = False

    def record(self, what: str, status: int | None, detail: str = "") -> None:
        self.cases += 1
        if status is None or status >= 500:
            self.five_xx += 1
            if len(self.failures) < 20:
                self.failures.append(f"{what} -> {status}: {detail[:300]}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "cases": self.cases,
            "five_xx": self.five_xx,
            "healthy_after": self.healthy_after,
            "failures": self.failures,
        }


def _check(strategy: Any, label: str, session: Any, report: FuzzReport, max_examples: int) -> Any:
    """A hypothesis test sending `max_examples` cases drawn from `strategy` and recording each status."""
    from hypothesis import HealthCheck, Phase, given, settings

    @given(case=strategy)
    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,  # reproducible: a failure found once is found again
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def one(case: Any) -> None:
        what = f"{label} {case.formatted_path}"
        try:
            resp = case.call(session=session)
        except Exception as exc:  # an exception escaping the app is a crash, counted like a 5xx
            report.record(what, None, f"{type(exc).__name__}: {exc}")
            return
        report.record(what, resp.status_code, resp.text)

    return one


def schemathesis_fuzz(app: FastAPI, openapi_path: str, report: FuzzReport, max_examples: int) -> None:
    """Positive and negative schemathesis cases for every operation in the app's OpenAPI document."""
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.python import asgi

    schema = schemathesis.openapi.from_asgi(openapi_path, app)
    with asgi.get_client(app) as session:
        for result in schema.get_all_operations():
            op = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{mode.name.lower()} {op.method.upper()}"
                try:
                    _check(op.as_strategy(generation_mode=mode), label, session, report, max_examples)()
                except Unsatisfiable:  # nothing to violate (e.g. negative cases of a parameterless GET)
                    continue


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def hostile_inputs(app: FastAPI, name: str, report: FuzzReport, headers: dict[str, str]) -> None:
    """Hand-written hostile requests against every POST route (path ids filled with real and foreign ids)."""
    huge = b'{"x": "' + b"A" * (24 * 2**20) + b'"}'
    bodies: list[tuple[str, bytes, str]] = [
        ("huge 24MB body", huge, "application/json"),
        ("deep nesting 100k", _deep(100_000), "application/json"),
        ("deep array 50k", b"[" * 50_000 + b"]" * 50_000, "application/json"),
        ("invalid utf-8", b'{"x": "\xff\xfe\xc3\x28"}', "application/json"),
        ("lone surrogate escape", b'{"x": "\\ud800"}', "application/json"),
        ("NaN literal", b'{"x": NaN}', "application/json"),
        ("truncated json", b'{"x": [1, 2', "application/json"),
        ("form body", b"a=1&b=2", "application/x-www-form-urlencoded"),
        ("xml body", b"<a>1</a>", "application/xml"),
        ("no content type", b'{"x": 1}', ""),
        ("binary", bytes(range(256)) * 64, "application/octet-stream"),
    ]
    with TestClient(app, raise_server_exceptions=False) as client:
        client.headers.update(headers)
        ids = _real_ids(client, name)
        paths = _post_paths(app, ids)
        for path in paths:
            for label, body, ctype in bodies:
                h = {"content-type": ctype} if ctype else {}
                r = client.post(path, content=body, headers=h)
                report.record(f"{label} POST {path}", r.status_code, r.text)
        if name != "rollout_api":
            _hostile_tool_calls(client, ids["session"], report)
        for label, path, method in _foreign_id_requests(name, ids):
            r = client.request(method, path, json=_foreign_body(name, ids))
            report.record(f"{label} {method} {path}", r.status_code, r.text)
            if r.status_code < 400:
                report.failures.append(f"{label} {method} {path} was accepted ({r.status_code})")
                report.five_xx += 1  # a foreign id must never be honoured; counted as a failure
        report.healthy_after = client.get("/health").status_code == 200


def _hostile_tool_calls(client: TestClient, session_id: str, report: FuzzReport) -> None:
    """Every tool of the session called with hostile argument strings (the body itself is valid)."""
    tools = client.get("/tools", params={"session_id": session_id}).json().get("tools", [])
    names = [t["function"]["name"] for t in tools] + ["no_such_tool"]
    args = [
        '{"a":' * 20_000 + "1" + "}" * 20_000,
        "[" * 20_000 + "]" * 20_000,
        '{"a": "' + "x" * 2**20 + '"}',
        '{"a": 1e999999}',
        '{"a": "\\ud800"}',
        "\u0000",
    ]
    for tool in names:
        for i, arg in enumerate(args):
            call = {"id": f"h{i}", "name": tool, "arguments": arg}
            r = client.post(f"/sessions/{session_id}/step", json={"tool_calls": [call]})
            report.record(f"hostile arguments #{i} to tool {tool}", r.status_code, r.text)
            if r.status_code == 404:  # the episode ended (e.g. reasoning closes on a bad call): start another
                session_id = client.post("/sessions", json={}).json()["session_id"]


def _real_ids(client: TestClient, name: str) -> dict[str, str]:
    """Ids that exist on this server: two sessions (one then closed), or two jobs with their leases."""
    if name == "rollout_api":
        jobs = [
            {
                "id": f"fz-{i}",
                "task": {"task_id": "t", "prompt": "p"},
                "env": {"endpoint": "http://x", "name": "e"},
                "sampling": {"temperature": 1.0, "max_tokens": 8},
                "policy_version": 0,
            }
            for i in range(2)
        ]
        r = client.post("/v1/jobs", json={"jobs": jobs})
        assert r.status_code == 200, r.text
        mine: dict[str, str] = {}
        for _ in range(1000):  # fuzzed jobs may be queued ahead of ours: lease past them
            got = client.post("/v1/jobs/lease", json={"worker_id": "fz", "max_jobs": 100}).json()["jobs"]
            mine |= {g["job"]["id"]: g["lease_id"] for g in got if g["job"]["id"] in ("fz-0", "fz-1")}
            if len(mine) == 2 or not got:
                break
        return {"job": "fz-0", "lease": mine["fz-0"], "other_job": "fz-1", "other_lease": mine["fz-1"]}
    a = client.post("/sessions", json={}).json()["session_id"]
    b = client.post("/sessions", json={}).json()["session_id"]
    client.delete(f"/sessions/{b}")
    return {"session": a, "closed_session": b}


def _post_paths(app: FastAPI, ids: dict[str, str]) -> list[str]:
    fill = ids.get("job") or ids.get("session") or "x"
    out = []
    for route in app.routes:
        path, methods = getattr(route, "path", ""), getattr(route, "methods", None) or set()
        if "POST" in methods and "mcp" not in path:
            out.append(path.replace("{job_id}", fill).replace("{session_id}", fill))
    return sorted(set(out))


def _foreign_id_requests(name: str, ids: dict[str, str]) -> list[tuple[str, str, str]]:
    if name == "rollout_api":
        return [
            ("other job's lease", f"/v1/jobs/{ids['job']}/heartbeat", "POST"),
            ("other job's lease", f"/v1/jobs/{ids['job']}/trajectory", "POST"),
            ("other job's lease", f"/v1/jobs/{ids['job']}/fail", "POST"),
        ]
    closed, gone = ids["closed_session"], "0" * 32
    return [
        ("closed session", f"/sessions/{closed}/step", "POST"),
        ("closed session", f"/sessions/{closed}/state", "GET"),
        ("closed session", f"/sessions/{closed}", "DELETE"),
        ("unknown session", f"/sessions/{gone}/step", "POST"),
        ("closed session", f"/step?session_id={closed}", "POST"),
        ("traversal session", "/sessions/..%2F..%2Fetc%2Fpasswd/state", "GET"),
    ]


def _foreign_body(name: str, ids: dict[str, str]) -> dict[str, Any] | None:
    if name != "rollout_api":
        return {"final_answer": "42"}  # a valid action: the refusal must come from the id
    job = ids["job"]
    traj = {
        "id": f"tr-{job}",
        "job_id": job,
        "task_id": "t",
        "token_ids": [1, 2, 3],
        "loss_mask": [0, 1, 1],
        "logprobs": [None, -0.1, -0.1],
        "prompt_len": 1,
        "policy_versions": [0],
    }
    # The lease belongs to the other job: a worker presenting it must be refused.
    return {"worker_id": "fz", "lease_id": ids["other_lease"], "trajectory": traj, "reason": "x"}


def fuzz_server(
    app: FastAPI, name: str, openapi_path: str, max_examples: int, token: str | None = None
) -> FuzzReport:
    """Schemathesis then hostile inputs against one app; returns the counts and the first failures."""
    report = FuzzReport(name)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    schemathesis_fuzz(app, openapi_path, report, max_examples)
    hostile_inputs(app, name, report, headers)
    return report


def dumps(report: FuzzReport) -> str:
    return json.dumps(report.as_dict())
