"""OpenEnv-compatible routes, so OpenEnv clients and TRL's OpenEnv integration can drive our servers.

Shapes follow openenv.core.env_server (types.py / http_server.py): `POST /reset {seed?, episode_id?, ...}`
and `POST /step {action: {...}}` return `{observation: {...}, reward, done, metadata}`; `GET /state`,
`GET /schema` -> `{action, observation, state}`; WebSocket `/ws` speaks `{"type": "reset"|"step"|"state"|
"close", "data": {...}}` and answers `{"type": "observation"|"state"|"error", "data": {...}}`.

Deviation: OpenEnv's HTTP /reset and /step use a throwaway env per request. Ours keep state: /reset opens a
session (returned as `metadata.session_id`) that /step and /state use by default, or pass `session_id`.
Extra reset fields `task_id` / `task_spec` select the task. Each WebSocket connection owns one session.
"""

from __future__ import annotations

import contextlib
import json
from typing import TYPE_CHECKING, Any

from fastapi import Body, FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from environments.protocol.environment import EnvError
from environments.protocol.schemas import Action, Observation, ResetRequest, SessionState, StepResult
from environments.protocol.sessions import SessionError

if TYPE_CHECKING:
    from environments.protocol.app import EnvServer


class OpenEnvReset(BaseModel):
    model_config = ConfigDict(extra="allow")
    seed: int | None = Field(default=None, ge=0)
    episode_id: str | None = Field(default=None, max_length=255)
    task_id: str | None = None
    task_spec: dict[str, Any] | None = None


class OpenEnvStep(BaseModel):
    model_config = ConfigDict(extra="allow")
    action: dict[str, Any]
    session_id: str | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    request_id: str | None = Field(default=None, max_length=255)


def _obs_payload(obs: Observation) -> dict[str, Any]:
    return {
        "observation": {
            "messages": [m.openai() for m in obs.messages],
            "tools": obs.tools,
            "task_id": obs.task_id,
        },
        "reward": None,
        "done": False,
        "metadata": {"session_id": obs.session_id, **obs.info},
    }


def _step_payload(sid: str, res: StepResult) -> dict[str, Any]:
    return {
        "observation": {"messages": [m.openai() for m in res.messages]},
        "reward": res.reward,
        "done": res.done,
        "metadata": {"session_id": sid, **res.info},
    }


def _state_payload(st: SessionState) -> dict[str, Any]:
    return {"episode_id": st.session_id, "step_count": st.step_count, **st.model_dump(exclude={"session_id"})}


def add_openenv_routes(app: FastAPI, server: EnvServer) -> None:
    sessions = server.sessions

    def _sid(explicit: str | None) -> str:
        sid = explicit or server.openenv_default
        if sid is None:
            raise SessionError(404, "no session: call /reset first (or pass session_id)")
        return sid

    @app.post("/reset", tags=["openenv"])
    async def reset(req: OpenEnvReset = Body(default_factory=OpenEnvReset)) -> dict[str, Any]:
        try:
            rreq = ResetRequest(task_id=req.task_id, task_spec=req.task_spec, seed=req.seed)
        except ValidationError as exc:
            raise EnvError(str(exc.errors()[0]["msg"])) from exc
        old = server.openenv_default
        _, obs = await sessions.create(rreq)
        server.openenv_default = obs.session_id
        if old is not None and old in sessions.sessions:
            await sessions.close(old)
        return _obs_payload(obs)

    @app.post("/step", tags=["openenv"])
    async def step(req: OpenEnvStep) -> dict[str, Any]:
        sid = _sid(req.session_id)
        try:
            action = Action.model_validate(req.action)
        except ValidationError as exc:
            raise EnvError(f"invalid action: {exc.errors()[0]['msg']}") from exc
        return _step_payload(sid, await sessions.step(sid, action))

    @app.get("/state", tags=["openenv"])
    async def state(session_id: str | None = None) -> dict[str, Any]:
        return _state_payload(await sessions.state(_sid(session_id)))

    @app.get("/schema", tags=["openenv"])
    async def schema() -> dict[str, Any]:
        return {
            "action": Action.model_json_schema(),
            "observation": Observation.model_json_schema(),
            "state": SessionState.model_json_schema(),
        }

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        sid: str | None = None

        async def send(kind: str, data: dict[str, Any]) -> None:
            await websocket.send_text(json.dumps({"type": kind, "data": data}))

        try:
            while True:
                raw = await websocket.receive_text()
                try:
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError("message must be a JSON object")
                    kind, data = msg.get("type"), msg.get("data") or {}
                    if kind == "reset":
                        r = OpenEnvReset.model_validate(data)
                        rreq = ResetRequest(task_id=r.task_id, task_spec=r.task_spec, seed=r.seed)
                        _, obs = await sessions.create(rreq)
                        if sid is not None and sid in sessions.sessions:
                            await sessions.close(sid)
                        sid = obs.session_id
                        await send("observation", _obs_payload(obs))
                    elif kind == "step":
                        if sid is None:
                            raise SessionError(409, "send a reset message before step")
                        action = Action.model_validate(data.get("action", data))
                        await send("observation", _step_payload(sid, await sessions.step(sid, action)))
                    elif kind == "state":
                        if sid is None:
                            raise SessionError(409, "send a reset message before state")
                        await send("state", _state_payload(await sessions.state(sid)))
                    elif kind == "close":
                        break
                    else:
                        raise ValueError(f"unknown message type {kind!r}; use reset, step, state or close")
                except (ValueError, ValidationError) as exc:  # json errors are ValueErrors too
                    await send("error", {"message": str(exc), "code": "VALIDATION_ERROR"})
                except SessionError as exc:
                    await send(
                        "error", {"message": exc.message, "code": "SESSION_ERROR", "status": exc.status_code}
                    )
                except EnvError as exc:
                    await send("error", {"message": str(exc), "code": "EXECUTION_ERROR"})
        except WebSocketDisconnect:
            pass
        finally:
            if sid is not None and sid in sessions.sessions:
                await sessions.close(sid)
            with contextlib.suppress(Exception):
                await websocket.close()
