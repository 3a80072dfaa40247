"""Load driver for the rollout API (issue 10, item 4: "64 workers leasing and submitting for 2 minutes, zero lost
or duplicated trajectories"). The reliability bench calls `run_load`; it is also runnable on its own:

    python -m services.rollout_api.loadtest --url http://127.0.0.1:8200 --workers 64 --duration-s 120

A trainer thread keeps the queue topped up, each worker thread leases 1-4 jobs and submits a trajectory of
`tokens` tokens per job, and at the end the collected outcomes are compared with the enqueued ids.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from typing import Any

from services.rollout_api.client import LeaseLost, RolloutAPIError, RolloutClient, SubmissionRejected


def _trajectory(job_id: str, tokens: int) -> dict[str, Any]:
    gen = tokens // 2
    return {
        "id": f"tr-{job_id}",
        "job_id": job_id,
        "task_id": job_id,
        "token_ids": [(i * 7919) % 50_000 for i in range(tokens)],
        "loss_mask": [0] * (tokens - gen) + [1] * gen,
        "logprobs": [None] * (tokens - gen) + [-0.25] * gen,
        "prompt_len": tokens - gen,
        "policy_versions": [0],
    }


def run_load(
    url: str, token: str | None = None, *, workers: int = 64, duration_s: float = 120.0, tokens: int = 512
) -> dict[str, Any]:
    """Drive the API with `workers` threads for `duration_s`, then drain and audit. Returns the counts."""
    run = uuid.uuid4().hex[:8]
    enqueued: list[str] = []
    errors: list[str] = []
    submit_s: list[float] = []
    lock = threading.Lock()
    stop_enqueue = threading.Event()
    stop_work = threading.Event()
    fed = threading.Event()  # set after the feeder's last enqueue has returned
    trainer = RolloutClient(url, token, worker_id=f"trainer-{run}", retries=8)
    start_cursor = trainer.collect(since=0, limit=1).next_since
    # Start after every outcome that existed before this run.
    while True:
        page = trainer.collect(since=start_cursor, limit=1000)
        if not page.items:
            break
        start_cursor = page.next_since

    def feed() -> None:
        try:
            n = 0
            while not stop_enqueue.is_set():
                if trainer.metrics()["queued"] < 2 * workers:
                    batch = [f"load-{run}-{n + i}" for i in range(workers)]
                    n += len(batch)
                    trainer.enqueue(
                        [
                            {
                                "id": jid,
                                "task": {"task_id": jid},
                                "env": {"endpoint": "http://127.0.0.1:1", "name": "load"},
                                "sampling": {"temperature": 1.0, "max_tokens": tokens},
                                "policy_version": 0,
                            }
                            for jid in batch
                        ]
                    )
                    with lock:
                        enqueued.extend(batch)
                time.sleep(0.05)
        finally:
            fed.set()

    def work(i: int) -> None:
        with RolloutClient(url, token, worker_id=f"w{i}-{run}", retries=8) as c:
            while not stop_work.is_set():
                try:
                    got = c.lease(max_jobs=1 + i % 4)
                    if not got:
                        # Not stop_enqueue: a batch still being enqueued when it was set would be left
                        # queued by workers that had already quit, and reported as lost.
                        if fed.is_set():
                            return
                        time.sleep(0.02)
                        continue
                    for g in got:
                        t0 = time.perf_counter()
                        try:
                            c.submit(g.job.id or "", g.lease_id, _trajectory(g.job.id or "", tokens))
                        except (SubmissionRejected, LeaseLost):
                            continue
                        with lock:
                            submit_s.append(time.perf_counter() - t0)
                except RolloutAPIError as exc:
                    with lock:
                        errors.append(str(exc)[:300])

    feeder = threading.Thread(target=feed, daemon=True)
    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(workers)]
    t_start = time.perf_counter()
    feeder.start()
    for t in threads:
        t.start()
    time.sleep(duration_s)
    stop_enqueue.set()
    feeder.join(timeout=60)
    for t in threads:
        t.join(timeout=max(60.0, duration_s))
    stop_work.set()
    elapsed = time.perf_counter() - t_start
    collected: list[str] = []
    cursor = start_cursor
    while True:
        page = trainer.collect(since=cursor, limit=1000, kind="done")
        if not page.items:
            break
        collected += [it.job_id for it in page.items if it.job_id.startswith(f"load-{run}-")]
        cursor = page.next_since
    metrics = trainer.metrics()
    trainer.close()
    want = set(enqueued)
    return {
        "workers": workers,
        "duration_s": round(elapsed, 2),
        "jobs_enqueued": len(enqueued),
        "trajectories": len(collected),
        "trajectories_lost": len(want - set(collected)),
        "trajectories_duplicated": len(collected) - len(set(collected)),
        "errors": len(errors),
        "first_errors": errors[:3],
        "submits_per_s": round(len(submit_s) / elapsed, 1) if elapsed else 0.0,
        "submit_p50_ms": round(1000 * statistics.median(submit_s), 2) if submit_s else None,
        "lease_to_submit_p50_s": metrics["lease_to_submit_p50_s"],
        "tokens_per_trajectory": tokens,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m services.rollout_api.loadtest", description=__doc__)
    p.add_argument("--url", default="http://127.0.0.1:8200")
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--duration-s", type=float, default=120.0)
    p.add_argument("--tokens", type=int, default=512)
    a = p.parse_args(argv)
    token = os.environ.get("AGENTRL_API_TOKEN")  # never a command-line argument
    print(json.dumps(run_load(a.url, token, workers=a.workers, duration_s=a.duration_s, tokens=a.tokens)))


if __name__ == "__main__":
    main()
