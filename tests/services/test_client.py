"""The worker/trainer client against a real uvicorn subprocess: round trip, retries, auth, lease keeping, logs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.rollout_api.app import create_app
from services.rollout_api.client import (
    APIUnavailable,
    LeaseLost,
    RolloutClient,
    SubmissionRejected,
    Unauthorized,
)
from tests.services.conftest import Server, ThreadServer, free_port, job, traj

TOKEN = "client-test-" + "k9" * 20


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadServer]:
    app = create_app(str(tmp_path / "rollout.db"), token=TOKEN, lease_s=30, reap_interval_s=0.2)
    with ThreadServer(app) as s:
        yield s


@pytest.fixture
def client(server: ThreadServer) -> Iterator[RolloutClient]:
    with RolloutClient(server.url, TOKEN, worker_id="w-client", retries=2, backoff_s=0.05) as c:
        yield c


def wait_for(pred: Any, what: str, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_round_trip_enqueue_lease_submit_collect(client: RolloutClient) -> None:
    specs = [{**job(i), "id": None, "group_id": "rt"} for i in range(3)]
    res = client.enqueue(specs)
    assert res.created == 3 and len(set(res.ids)) == 3
    start = client.collect(since=0, limit=1000).next_since
    got = client.lease(max_jobs=3)
    assert sorted(g.job.id for g in got) == sorted(res.ids)
    for g in got:
        r1 = client.submit(g.job.id, g.lease_id, traj(g.job.id))
        r2 = client.submit(g.job.id, g.lease_id, traj(g.job.id))
        assert (r1.duplicate, r2.duplicate, r1.seq) == (False, True, r2.seq)
    with pytest.raises(SubmissionRejected, match="different trajectory"):
        client.submit(got[0].job.id, got[0].lease_id, traj(got[0].job.id, reward=-1.0))
    with pytest.raises(LeaseLost, match="already done"):
        client.heartbeat(got[0].job.id, got[0].lease_id)
    assert client.get_trajectory(got[0].job.id).token_ids == traj(got[0].job.id)["token_ids"]
    page = client.collect(since=start)
    assert sorted(i.job_id for i in page.items) == sorted(res.ids)
    assert all(i.state == "done" and i.trajectory is not None for i in page.items)
    assert client.collect(since=page.next_since).items == []


def test_lease_keeper_extends_the_lease_and_reports_loss(client: RolloutClient) -> None:
    (jid,) = client.enqueue([{**job(0), "id": None}]).ids
    (lj,) = client.lease(lease_s=30.0)
    with client.keep_alive(lj, interval_s=0.1) as keeper:
        # Each heartbeat moves the expiry to now + 30 s; seeing it move proves the keeper is beating.
        wait_for(lambda: client.get_job(jid)["lease_expires"] > lj.lease_expires + 0.3, "a heartbeat")
        assert client.get_job(jid)["attempts"] == 1 and not keeper.lost.is_set()
        client.fail(jid, lj.lease_id, "giving up on purpose")
        wait_for(keeper.lost.is_set, "the keeper to notice the lost lease")
        assert "failed" in (keeper.error or "")


def test_expired_lease_raises_lease_lost(client: RolloutClient) -> None:
    (jid,) = client.enqueue([{**job(0), "id": None}]).ids
    (lj,) = client.lease(lease_s=0.2)
    wait_for(lambda: client.get_job(jid)["state"] == "queued", "the reaper to requeue the job")
    with pytest.raises(LeaseLost, match="requeued"):
        client.heartbeat(jid, lj.lease_id)
    with pytest.raises(LeaseLost):
        client.fail(jid, lj.lease_id, "too late")


def test_wrong_token_is_unauthorized(server: ThreadServer) -> None:
    with RolloutClient(server.url, "not-the-token", retries=0) as c:
        with pytest.raises(Unauthorized):
            c.metrics()
        assert c.health()["status"] == "ok"  # /health is open
        assert "not-the-token" not in repr(c)


def test_unreachable_api_fails_with_a_clear_message_not_a_hang() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    c = RolloutClient(url, retries=2, backoff_s=0.01, timeout_s=1.0)
    with pytest.raises(APIUnavailable, match=r"127\.0\.0\.1.*after 3 attempts.*ConnectError"):
        c.lease()
    c.close()


@pytest.mark.slow
def test_tokens_never_appear_in_server_logs(tmp_path: Path) -> None:
    """A real `python -m services.rollout_api` subprocess at debug level with access logs."""
    server = Server(str(tmp_path / "rollout.db"), tmp_path / "server.log", token=TOKEN).start()
    try:
        with RolloutClient(server.url, TOKEN, retries=2) as client:
            (jid,) = client.enqueue([{**job(0), "id": None}]).ids
            (lj,) = client.lease()
            client.submit(jid, lj.lease_id, traj(jid))
        wrong = "wrong-secret-" + "q" * 24
        r = httpx.get(server.url + "/v1/metrics", headers={"Authorization": f"Bearer {wrong}"}, timeout=5)
        assert r.status_code == 401 and wrong not in r.text
    finally:
        server.stop()
    log = Path(server.log_path).read_text()
    assert "leased 1 job(s)" in log and "/v1/metrics" in log  # debug/access logging was on
    assert TOKEN not in log and wrong not in log
