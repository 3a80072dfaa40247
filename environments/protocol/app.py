"""`create_env_app`: the FastAPI server every environment shares.

Routes (all but /health need the bearer token when one is configured):
- REST: POST /sessions, POST /sessions/{id}/step, GET /sessions/{id}/state, DELETE /sessions/{id},
  GET /health, GET /metadata, GET /tools[?session_id=]
- MCP (streamable HTTP, JSON mode): /mcp and /sessions/{id}/mcp (see mcp_server.py)
- OpenEnv-compatible: POST /reset, POST /step, GET /state, GET /schema, WebSocket /ws (see openenv.py)

Request bodies over `settings.max_body_bytes` get 413 before they are read (agentrl/body_limit.py).
Bad requests of every kind get a 4xx with an `error` string naming what is wrong; a failing step leaves
the session as it was (sessions.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from agentrl.body_limit import BodyLimitMiddleware
from environments.protocol.auth import BearerAuth
from environments.protocol.environment import EnvError, Environment
from environments.protocol.mcp_server import MCPEndpoint, build_mcp_server
from environments.protocol.schemas import (
    PROTOCOL_VERSION,
    Action,
    Metadata,
    Observation,
    ResetRequest,
    SessionState,
    StepResult,
)
from environments.protocol.sessions import SessionError, SessionManager
from environments.protocol.settings import ServerSettings
from environments.protocol.tools import ToolSpec

log = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Bad request (the message says what)"},
    401: {"description": "Missing or wrong bearer token"},
    404: {"description": "Unknown, closed or expired session, or unknown task"},
    409: {"description": "The episode is done"},
    422: {"description": "Body does not match the schema"},
    413: {"description": "Request body over the server's size limit"},
    429: {"description": "Session cap reached"},
}


class EnvServer:
    """The state behind one app: settings, the session table and a probe env for metadata."""

    def __init__(self, env_factory: Callable[[], Environment], settings: ServerSettings) -> None:
        self.env_factory = env_factory
        self.settings = settings
        self.sessions = SessionManager(env_factory, settings.max_sessions, settings.idle_timeout_s)
        self._probe: Environment | None = None
        self.openenv_default: str | None = None
        # Blocking envs (subprocesses) run in worker threads; the class says so unless settings override.
        self.sessions.blocking = (
            settings.blocking if settings.blocking is not None else type(self.probe).blocking
        )

    @property
    def probe(self) -> Environment:
        # One instance, never reset, used only to read class-level facts (name, default tools, task ids).
        if self._probe is None:
            self._probe = self.env_factory()
        return self._probe

    @property
    def name(self) -> str:
        return self.probe.name

    @property
    def version(self) -> str:
        return self.probe.version

    def default_tools(self) -> list[ToolSpec]:
        return list(self.probe.tools())


def _error(status: int, message: str, detail: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(status_code=status, content=body)


def _describe_validation(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    parts, detail = [], []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid")
        parts.append(f"{loc}: {msg}")
        detail.append({"loc": list(err.get("loc", ())), "msg": msg, "type": err.get("type")})
    return "invalid request: " + "; ".join(parts), detail


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SessionError)
    async def _session_error(_: Request, exc: SessionError) -> JSONResponse:
        return _error(exc.status_code, exc.message)

    @app.exception_handler(EnvError)
    async def _env_error(_: Request, exc: EnvError) -> JSONResponse:
        return _error(exc.status_code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, detail = _describe_validation(exc)
        return _error(422, message, detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        # Only bugs land here (bad input is handled above); the session was restored by SessionManager.
        log.exception("internal error")
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def create_env_app(env_factory: Callable[[], Environment], settings: ServerSettings | None = None) -> FastAPI:
    """Build the FastAPI app serving `env_factory()` sessions. `settings` default: `ServerSettings.from_env()`."""
    settings = settings or ServerSettings.from_env()
    server = EnvServer(env_factory, settings)
    mcp_endpoint = MCPEndpoint(build_mcp_server(server)) if settings.mcp else None

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(server.sessions.reaper_loop())
        async with contextlib.AsyncExitStack() as stack:
            if mcp_endpoint is not None:
                await stack.enter_async_context(mcp_endpoint.new_manager().run())
            try:
                yield
            finally:
                reaper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reaper
                await server.sessions.close_all()
                if mcp_endpoint is not None:
                    mcp_endpoint.manager = None

    probe = server.probe
    app = FastAPI(
        title=f"agentrl environment: {probe.name}",
        description=(probe.description or probe.name)
        + f"\n\nagentrl environment protocol v{PROTOCOL_VERSION}.",
        version=f"{PROTOCOL_VERSION}+{probe.name}.{probe.version}",
        lifespan=lifespan,
        responses=ERRORS,
    )
    app.state.env_server = server
    install_error_handlers(app)

    @app.get("/health", tags=["info"])
    async def health() -> dict[str, Any]:
        """Liveness (open without a token)."""
        return {"status": "healthy", "env": server.name, "sessions": len(server.sessions.sessions)}

    @app.get("/metadata", tags=["info"])
    async def metadata() -> Metadata:
        return Metadata(
            name=server.name,
            description=probe.description,
            version=probe.version,
            task_ids=probe.task_ids(),
            max_sessions=settings.max_sessions,
            idle_timeout_s=settings.idle_timeout_s,
            auth_required=settings.token is not None,
            routes=sorted({getattr(r, "path", "") for r in app.routes}),
        )

    @app.get("/tools", tags=["info"])
    async def tools(session_id: str | None = None) -> dict[str, Any]:
        """The tools as OpenAI function schemas (a session's tools with `session_id`, else the defaults)."""
        specs = list(server.sessions.get(session_id).env.tools()) if session_id else server.default_tools()
        return {"tools": [s.openai() for s in specs], "mcp": [s.mcp() for s in specs]}

    @app.post("/sessions", tags=["sessions"], status_code=201, response_model_exclude_none=True)
    async def create_session(req: ResetRequest = Body(default_factory=ResetRequest)) -> Observation:
        """Open a session: reset to a task (id or inline spec); returns the initial observation."""
        _, obs = await server.sessions.create(req)
        return obs

    # The hot path of every rollout: the body is parsed straight from bytes with pydantic and the result is
    # serialised once, skipping FastAPI's generic dependency and response-model machinery (about half the
    # per-step server cost). The OpenAPI entry is declared by hand so the schema stays complete.
    @app.post(
        "/sessions/{session_id}/step",
        tags=["sessions"],
        response_model=StepResult,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Action"}}},
            }
        },
    )
    async def step(session_id: str, request: Request) -> Response:
        try:
            action = Action.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(
                [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors(include_url=False)]
            ) from None
        result = await server.sessions.step(session_id, action)
        return Response(result.model_dump_json(exclude_none=True), media_type="application/json")

    @app.get("/sessions/{session_id}/state", tags=["sessions"])
    async def state(session_id: str) -> SessionState:
        return await server.sessions.state(session_id)

    @app.delete("/sessions/{session_id}", tags=["sessions"])
    async def close(session_id: str) -> dict[str, Any]:
        await server.sessions.close(session_id)
        return {"session_id": session_id, "closed": True}

    def openapi() -> dict[str, Any]:
        # The step body is parsed by hand (see above), so register the Action schema it references.
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema = Action.model_json_schema(ref_template="#/components/schemas/{model}")
            comps = spec.setdefault("components", {}).setdefault("schemas", {})
            comps.update(schema.pop("$defs", {}))
            comps["Action"] = schema
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    from environments.protocol.openenv import add_openenv_routes

    add_openenv_routes(app, server)

    if mcp_endpoint is not None:
        app.router.routes.append(Route("/mcp", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"]))
        app.router.routes.append(
            Route("/sessions/{session_id}/mcp", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"])
        )

    # Outside every route and the MCP endpoint: an oversized body is refused before anything buffers it.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        error_key="error",
        setting="AGENTRL_ENV_MAX_BODY_BYTES",
    )
    if settings.token:
        app.add_middleware(BearerAuth, token=settings.token)
    return app
