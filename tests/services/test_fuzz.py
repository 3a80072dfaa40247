"""Seeded mutation fuzzing of every write route: no input may produce a 5xx or break the store.

A light, dependency-free complement to the schemathesis suite of issue 10: each case takes a valid body and
swaps, deletes or replaces fields (wrong types, huge and negative numbers, odd unicode, deep nesting).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from services.rollout_api.app import create_app
from tests.services.conftest import FakeClock, job, traj

ODD_VALUES: list[Any] = [
    None,
    True,
    -1,
    0,
    2**63,
    -(2**80),
    1e308,
    -1e-308,
    "",
    "x" * 5000,
    "\u0000",
    "\u202e\U0001f600",
    "../../etc/passwd",
    [],
    [1, "a", None],
    {},
    {"a": {"b": {"c": [1, 2, {"d": None}]}}},
    json.loads("[" * 500 + "]" * 500),
]


def mutate(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """Replace, drop or add one thing somewhere inside value."""
    if isinstance(value, dict) and value and depth < 4 and rng.random() < 0.7:
        key = rng.choice(list(value))
        out = dict(value)
        roll = rng.random()
        if roll < 0.2:
            del out[key]
        elif roll < 0.3:
            out[f"unknown_{rng.randint(0, 9)}"] = rng.choice(ODD_VALUES)
        else:
            out[key] = mutate(rng, value[key], depth + 1)
        return out
    if isinstance(value, list) and value and depth < 4 and rng.random() < 0.6:
        out = list(value)
        i = rng.randrange(len(out))
        out[i] = mutate(rng, out[i], depth + 1)
        return out
    return rng.choice(ODD_VALUES)


@pytest.fixture
def client(db_path: Path, clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(str(db_path), token="", lease_s=30, reap_interval_s=0, clock=clock)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_mutated_bodies_never_cause_5xx(client: TestClient) -> None:
    rng = random.Random(1234)
    client.post("/v1/jobs", json={"jobs": [job(i) for i in range(3)]})
    (lj,) = client.post("/v1/jobs/lease", json={"worker_id": "w"}).json()["jobs"]
    jid, lid = lj["job"]["id"], lj["lease_id"]
    cases = [
        ("/v1/jobs", {"jobs": [job(7)]}),
        ("/v1/jobs/lease", {"worker_id": "w", "max_jobs": 1, "lease_s": 5.0, "request_id": "r"}),
        (f"/v1/jobs/{jid}/heartbeat", {"worker_id": "w", "lease_id": lid}),
        (f"/v1/jobs/{jid}/trajectory", {"worker_id": "w", "lease_id": lid, "trajectory": traj(jid)}),
        (f"/v1/jobs/{jid}/fail", {"worker_id": "w", "lease_id": lid, "reason": "r", "retryable": True}),
    ]
    statuses: dict[int, int] = {}
    for path, valid in cases:
        for _ in range(60):
            body = mutate(rng, valid)
            r = client.post(path, json=body)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code < 500, (path, body, r.status_code, r.text[:500])
    for path in ("/v1/jobs/%00", "/v1/jobs/" + "é" * 10, "/v1/trajectories?since=abc", "/v1/jobs?limit=-5"):
        assert client.get(path).status_code < 500, path
    assert client.get("/health").status_code == 200
    assert client.app.state.store.integrity_check() == "ok"
    assert statuses.get(200, 0) > 0 and sum(v for k, v in statuses.items() if 400 <= k < 500) > 150
