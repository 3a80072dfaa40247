"""MCP (streamable HTTP) view of an environment server, built from the same tool registry.

- `/sessions/{id}/mcp`: `tools/list` is that session's tool list; `tools/call` is one step of that session
  with a single tool call, so MCP agents and REST agents share one episode state and one reward.
- `/mcp`: `tools/list` of the environment's default tools (discovery); calls there are answered with a
  tool error that says how to open a session.

Deviation from a stateful MCP session per episode: the SDK runs in stateless JSON mode and the episode is
named by the URL, so MCP clients need no session affinity (works behind any load balancer and with both
the handshake and the 2026 per-request protocol eras of the `mcp` SDK).
"""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

import mcp.types as mtypes
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from starlette.types import Receive, Scope, Send

from environments.protocol.environment import EnvError
from environments.protocol.schemas import Action, ToolCall
from environments.protocol.sessions import SessionError

if TYPE_CHECKING:
    from environments.protocol.app import EnvServer


def _session_id_from(ctx: Any) -> str | None:
    request = getattr(ctx, "request", None)
    if request is None:
        return None
    return request.scope.get("path_params", {}).get("session_id")


def build_mcp_server(server: EnvServer) -> Server:
    async def list_tools(ctx: Any, params: Any) -> mtypes.ListToolsResult:
        sid = _session_id_from(ctx)
        if sid is None:
            specs = server.default_tools()
        else:
            try:
                specs = list(server.sessions.get(sid).env.tools())
            except SessionError as exc:
                raise ValueError(exc.message) from exc
        tools = [
            mtypes.Tool(name=s.name, description=s.description, input_schema=s.parameters) for s in specs
        ]
        return mtypes.ListToolsResult(tools=tools)

    async def call_tool(ctx: Any, params: mtypes.CallToolRequestParams) -> mtypes.CallToolResult:
        sid = _session_id_from(ctx)
        if sid is None:
            return _error("no session: create one with POST /sessions, then use /sessions/{id}/mcp")
        call = ToolCall(
            id=f"mcp_{secrets.token_hex(4)}", name=params.name, arguments=json.dumps(params.arguments or {})
        )
        try:
            result = await server.sessions.step(sid, Action(tool_calls=[call]))
        except SessionError as exc:
            return _error(exc.message)
        except EnvError as exc:
            return _error(str(exc))
        texts = [m.content or "" for m in result.messages if m.role == "tool"]
        extra = [m.openai() for m in result.messages if m.role != "tool"]
        structured = {"reward": result.reward, "done": result.done, "info": result.info, "messages": extra}
        return mtypes.CallToolResult(
            content=[mtypes.TextContent(type="text", text=t) for t in texts],
            structured_content=structured,
            is_error=bool(result.info.get("tool_errors")),
        )

    return Server(
        f"agentrl-{server.name}",
        version=server.version,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _error(text: str) -> mtypes.CallToolResult:
    return mtypes.CallToolResult(content=[mtypes.TextContent(type="text", text=text)], is_error=True)


class MCPEndpoint:
    """ASGI endpoint whose session manager is (re)created for every app lifespan (the SDK's manager
    cannot be restarted, and tests start the same app more than once)."""

    def __init__(self, mcp_server: Server) -> None:
        self.mcp_server = mcp_server
        self.manager: StreamableHTTPSessionManager | None = None

    def new_manager(self) -> StreamableHTTPSessionManager:
        self.manager = StreamableHTTPSessionManager(app=self.mcp_server, json_response=True, stateless=True)
        return self.manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.manager is None:
            body = b'{"error": "MCP endpoint is not running (server lifespan not started)"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await StreamableHTTPASGIApp(self.manager)(scope, receive, send)
