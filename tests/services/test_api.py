"""The HTTP surface through FastAPI's TestClient on a real SQLite file: auth, malformed input, metrics, OpenAPI."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.rollout_api.app import create_app
from services.rollout_api.settings import API_VERSION
from tests.services.conftest import FakeClock, job, traj

TOKEN = "tok-" + "x7" * 16
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(db_path: Path, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(
        str(db_path), token=TOKEN, lease_s=30, reap_interval_s=0, max_body_bytes=2**20, clock=clock
    )
    with TestClient(app, headers=AUTH) as c:
        yield c


def snapshot(db: Path) -> str:
    """A digest of every row of every table: equal digests mean the store did not change."""
    with sqlite3.connect(db) as conn:
        tables = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
        ]
        rows = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}  # noqa: S608
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def leased(client: TestClient, n: int = 1) -> list[dict[str, Any]]:
    r = client.post("/v1/jobs", json={"jobs": [job(i) for i in range(n)]})
    assert r.status_code == 200, r.text
    r = client.post("/v1/jobs/lease", json={"worker_id": "w1", "max_jobs": n})
    assert r.status_code == 200, r.text
    return r.json()["jobs"]


def test_full_worker_round_trip(client: TestClient, clock: FakeClock) -> None:
    (lj,) = leased(client)
    assert (lj["lease_expires"], lj["lease_s"], lj["attempt"]) == (clock.now + 30, 30, 1)
    jid, lid = lj["job"]["id"], lj["lease_id"]
    clock.advance(5)
    r = client.post(f"/v1/jobs/{jid}/heartbeat", json={"worker_id": "w1", "lease_id": lid})
    assert r.status_code == 200 and r.json()["lease_expires"] == clock.now + 30
    body = {"worker_id": "w1", "lease_id": lid, "trajectory": traj(jid)}
    r1 = client.post(f"/v1/jobs/{jid}/trajectory", json=body)
    r2 = client.post(f"/v1/jobs/{jid}/trajectory", json=body)
    assert (r1.status_code, r1.json()["duplicate"]) == (200, False)
    assert (r2.status_code, r2.json()["duplicate"]) == (200, True)
    other = {**body, "trajectory": traj(jid, reward=0.0)}
    r3 = client.post(f"/v1/jobs/{jid}/trajectory", json=other)
    assert r3.status_code == 409 and "different trajectory" in r3.json()["detail"]
    assert client.get(f"/v1/jobs/{jid}").json()["state"] == "done"
    assert client.get(f"/v1/jobs/{jid}/trajectory").json()["reward"] == 1.0
    page = client.get("/v1/trajectories", params={"since": 0}).json()
    assert [i["job_id"] for i in page["items"]] == [jid] and page["next_since"] == 1
    assert page["items"][0]["trajectory"]["token_ids"] == traj(jid)["token_ids"]
    assert client.get("/v1/trajectories", params={"since": 1}).json()["items"] == []
    m = client.get("/v1/metrics").json()
    assert (m["done"], m["submitted"], m["duplicates"], m["conflicts"]) == (1, 1, 1, 1)
    assert m["lease_to_submit_p50_s"] == 5.0
    prom = client.get("/v1/metrics", params={"format": "prometheus"}).text
    assert "agentrl_rollout_done 1" in prom and "agentrl_rollout_duplicates_total 1" in prom


def test_heartbeat_after_expiry_is_409_and_the_job_is_requeued(client: TestClient, clock: FakeClock) -> None:
    (lj,) = leased(client)
    clock.advance(31)
    r = client.post(
        f"/v1/jobs/{lj['job']['id']}/heartbeat", json={"worker_id": "w1", "lease_id": lj["lease_id"]}
    )
    assert r.status_code == 409 and "expired" in r.json()["detail"]
    again = client.post("/v1/jobs/lease", json={"worker_id": "w2"}).json()["jobs"]
    assert [(j["job"]["id"], j["attempt"]) for j in again] == [(lj["job"]["id"], 2)]
    assert client.get("/v1/metrics").json()["requeues"] == 1


def test_fail_route_and_404(client: TestClient) -> None:
    (lj,) = leased(client)
    jid = lj["job"]["id"]
    r = client.post(
        f"/v1/jobs/{jid}/fail", json={"worker_id": "w1", "lease_id": lj["lease_id"], "reason": "env down"}
    )
    assert r.json() == {"job_id": jid, "state": "failed", "duplicate": False}
    assert (
        client.get("/v1/jobs", params={"state": "failed"})
        .json()["jobs"][0]["failure_reason"]
        .endswith("env down")
    )
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.get(f"/v1/jobs/{jid}/trajectory").status_code == 404  # failed: no trajectory
    r = client.post("/v1/jobs/nope/heartbeat", json={"worker_id": "w1", "lease_id": "abc"})
    assert r.status_code == 404 and "nope" in r.json()["detail"]


def test_every_route_but_health_needs_the_token(db_path: Path) -> None:
    app = create_app(str(db_path), token=TOKEN, reap_interval_s=0)
    routes = [(m, r.path) for r in app.routes for m in getattr(r, "methods", ()) if m in ("GET", "POST")]
    assert len(routes) >= 10
    with TestClient(app) as c:
        for method, path in routes:
            url = path.replace("{job_id}", "job-0")
            if path == "/health":
                assert c.request(method, url).status_code == 200
                continue
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                r = c.request(method, url, headers=headers, json={})
                assert r.status_code == 401, (method, url, headers, r.status_code)
                assert r.headers["www-authenticate"] == "Bearer"
                assert TOKEN not in r.text
            assert c.request(method, url, headers=AUTH, json={}).status_code != 401, (method, url)


def test_token_defaults_to_the_environment(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRL_API_TOKEN", "from-env")
    with TestClient(create_app(str(db_path), reap_interval_s=0)) as c:
        assert c.get("/v1/metrics").status_code == 401
        assert c.get("/v1/metrics", headers={"Authorization": "Bearer from-env"}).status_code == 200
    with TestClient(
        create_app(str(db_path), token="", reap_interval_s=0)
    ) as c:  # "" disables auth explicitly
        assert c.get("/v1/metrics").status_code == 200


def _bad_submissions(jid: str, lid: str) -> list[tuple[str, dict[str, Any], str]]:
    ok = {"worker_id": "w1", "lease_id": lid, "trajectory": traj(jid)}
    json_headers = {"content-type": "application/json"}

    def body(**t: Any) -> bytes:
        return json.dumps({**ok, "trajectory": {**traj(jid), **t}}).encode()

    return [
        ("truncated JSON", {"content": b'{"worker_id": "w1", "lease_id": ', "headers": json_headers}, "json"),
        ("invalid UTF-8", {"content": b'{"worker_id": "\xff\xfe"}', "headers": json_headers}, ""),
        ("not JSON content", {"content": b"worker_id=w1", "headers": {"content-type": "text/plain"}}, ""),
        ("deep nesting", {"content": b"[" * 200_000 + b"]" * 200_000, "headers": json_headers}, ""),
        (
            "misaligned",
            {"content": body(loss_mask=[1, 1]), "headers": json_headers},
            "must have the same length",
        ),
        ("mask not 0/1", {"content": body(loss_mask=[0, 0, 2, 1, 1, 1]), "headers": json_headers}, "0 or 1"),
        ("token not int", {"content": body(token_ids=["a"] * 6), "headers": json_headers}, "token_ids"),
        ("prompt_len > n", {"content": body(prompt_len=99), "headers": json_headers}, "prompt_len"),
        (
            "NaN logprob",
            {"content": body(logprobs=[None, None, float("nan"), -1, -1, -1]), "headers": json_headers},
            "NaN",
        ),
        ("lone surrogate", {"content": body(task_id="\ud800"), "headers": json_headers}, "surrogate"),
        ("job id mismatch", {"json": {**ok, "trajectory": traj("job-9")}}, "does not match"),
        ("missing lease", {"json": {"worker_id": "w1", "trajectory": traj(jid)}}, "lease_id"),
        ("unknown field", {"json": {**ok, "extra": 1}}, "extra"),
        ("no body", {}, "body"),
        ("array body", {"json": [ok]}, ""),
        ("huge body", {"content": b"[" + b"1," * (2**20) + b"1]", "headers": json_headers}, "limit"),
    ]


def test_malformed_submissions_get_4xx_and_leave_the_store_unchanged(
    client: TestClient, db_path: Path
) -> None:
    (lj,) = leased(client)
    jid, lid = lj["job"]["id"], lj["lease_id"]
    before = snapshot(db_path)
    for name, kwargs, needle in _bad_submissions(jid, lid):
        r = client.post(f"/v1/jobs/{jid}/trajectory", **kwargs)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
        assert needle.lower() in r.text.lower(), (name, r.text[:300])
        assert snapshot(db_path) == before, f"{name} changed the store"
    assert client.get("/health").status_code == 200
    ok = client.post(
        f"/v1/jobs/{jid}/trajectory", json={"worker_id": "w1", "lease_id": lid, "trajectory": traj(jid)}
    )
    assert ok.status_code == 200 and ok.json()["duplicate"] is False


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"sampling": {"temperature": -1, "max_tokens": 10}}, "temperature"),
        ({"sampling": {"temperature": 1.0, "max_tokens": 0}}, "max_tokens"),
        ({"env": {}}, "endpoint"),
        ({"policy_version": -1}, "policy_version"),
        ({"id": "has space"}, "pattern"),
        ({"task": "not a dict"}, "task"),
        ({"task": {"x": float("inf")}}, "Infinity"),
    ],
)
def test_malformed_jobs_get_4xx_and_enqueue_nothing(
    client: TestClient, db_path: Path, change: dict[str, Any], needle: str
) -> None:
    before = snapshot(db_path)
    content = json.dumps({"jobs": [job(0), {**job(1), **change}]})
    r = client.post("/v1/jobs", content=content, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422) and needle in r.text, r.text
    assert snapshot(db_path) == before
    assert client.get("/v1/metrics").json()["queued"] == 0


def test_bad_query_and_path_parameters_are_4xx(client: TestClient) -> None:
    assert client.get("/v1/trajectories", params={"since": -1}).status_code == 422
    assert client.get("/v1/trajectories", params={"limit": 100_000}).status_code == 422
    assert client.get("/v1/trajectories", params={"kind": "weird"}).status_code == 422
    assert client.get("/v1/jobs", params={"state": "weird"}).status_code == 422
    assert client.get("/v1/jobs/" + "x" * 500).status_code == 422
    assert client.get("/v1/jobs/a%20b").status_code == 422
    assert client.post("/v1/jobs/lease", json={"worker_id": "w", "max_jobs": 0}).status_code == 422
    assert client.post("/v1/jobs", json={"jobs": []}).status_code == 422
    forged = client.post("/v1/jobs/lease", json={"worker_id": "w\nINFO forged log line"})
    assert forged.status_code == 422 and "worker_id" in forged.json()["error"]


def test_openapi_is_versioned_under_v1(client: TestClient) -> None:
    doc = client.get("/v1/openapi.json").json()
    assert doc["info"]["version"] == API_VERSION
    assert client.get("/health").json()["api_version"] == API_VERSION
    paths = set(doc["paths"])
    assert {
        "/v1/jobs",
        "/v1/jobs/lease",
        "/v1/jobs/{job_id}/trajectory",
        "/v1/trajectories",
        "/health",
    } <= paths
    assert all(p.startswith("/v1/") or p == "/health" for p in paths)
    assert client.get("/openapi.json").status_code == 404


@pytest.mark.slow
def test_the_same_api_on_postgres(postgres_url: str) -> None:
    from tests.services.conftest import reset_pg

    reset_pg(postgres_url)
    with TestClient(create_app(postgres_url, token=TOKEN, reap_interval_s=0.1), headers=AUTH) as c:
        assert c.get("/health").json()["store"] == "postgresql"
        (lj,) = leased(c)
        jid = lj["job"]["id"]
        body = {"worker_id": "w1", "lease_id": lj["lease_id"], "trajectory": traj(jid)}
        assert c.post(f"/v1/jobs/{jid}/trajectory", json=body).json()["duplicate"] is False
        assert c.post(f"/v1/jobs/{jid}/trajectory", json=body).json()["duplicate"] is True
        assert [i["job_id"] for i in c.get("/v1/trajectories").json()["items"]] == [jid]
        r = c.post("/v1/jobs", content=b'{"jobs": [', headers={"content-type": "application/json"})
        assert r.status_code == 422
        assert c.get("/v1/metrics").json()["done"] == 1
