"""`python -m services.rollout_api --db PATH`: serve the rollout API without the full agentrl CLI (container entry).

The token is read from $AGENTRL_API_TOKEN, never from the command line, where `ps` would show it.
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from services.rollout_api.app import create_app
from services.rollout_api.settings import redact_url


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m services.rollout_api", description=__doc__)
    p.add_argument("--db", default="runs/rollout.db", help="SQLite path or postgresql:// URL")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8200)
    p.add_argument("--lease-s", type=float, default=60.0, help="default lease duration in seconds")
    p.add_argument("--max-attempts", type=int, default=3, help="leases per job before it fails")
    p.add_argument("--reap-interval-s", type=float, default=5.0, help="background requeue period; 0 = lazy")
    p.add_argument(
        "--sqlite-synchronous",
        default="FULL",
        choices=["FULL", "NORMAL"],
        help="FULL: a commit survives power loss (fsync per commit); NORMAL: survives process crashes, faster",
    )
    p.add_argument(
        "--max-body-bytes", type=int, default=64 * 2**20, help="larger request bodies get 413, unread"
    )
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(
        args.db,
        lease_s=args.lease_s,
        max_attempts=args.max_attempts,
        reap_interval_s=args.reap_interval_s,
        sqlite_synchronous=args.sqlite_synchronous,
        max_body_bytes=args.max_body_bytes,
    )
    logging.getLogger("agentrl.rollout_api").info("store: %s", redact_url(args.db))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
