"""Auth audit: with a token configured, every route but /health must answer 401 without it or with a wrong one.

Routes come from the app's own route table (not its OpenAPI document), so undocumented routes, the OpenAPI and
docs pages, the MCP endpoints and the OpenEnv WebSocket are covered too.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from agentrl.reliability.servers import route_table

OPEN = frozenset({"/health"})


def audit_auth(app: FastAPI, token: str) -> tuple[int, list[str]]:
    """(requests made, routes that did not refuse). Each protected route is tried with no and a wrong token."""
    leaks: list[str] = []
    checked = 0
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path in route_table(app):
            if path in OPEN:
                continue
            url = path.replace("{job_id}", "job-x").replace("{session_id}", "s-x").replace("{path}", "x")
            for headers in ({}, {"authorization": f"Bearer wrong-{token}"}, {"authorization": token}):
                checked += 1
                if method == "WS":
                    try:
                        with client.websocket_connect(url, headers=headers) as ws:
                            ws.send_json({"type": "reset", "data": {}})
                            ws.receive_json()
                        leaks.append(f"WS {path} accepted {sorted(headers)}")
                    except WebSocketDisconnect as exc:
                        if exc.code != 1008:
                            leaks.append(f"WS {path} closed with {exc.code}, not 1008")
                    continue
                r = client.request(method, url, headers=headers, json={})
                if r.status_code != 401:
                    leaks.append(f"{method} {path} -> {r.status_code} with {sorted(headers) or 'no token'}")
        health = client.get("/health")
        if health.status_code != 200:
            leaks.append(f"GET /health -> {health.status_code}: health must stay open")
    return checked, leaks
