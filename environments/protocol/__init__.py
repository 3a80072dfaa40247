"""The agentrl environment protocol: one HTTP protocol for every environment server (torch-free).

Stable API (build environments against this; details in docs/environments.md)
-----------------------------------------------------------------------------
Wire schemas (`schemas.py`, pydantic, OpenAI chat format):
    ToolCall(id, name, arguments: str)             # arguments = the model's JSON *string*; OpenAI's nested
                                                   # {id, type, function: {name, arguments}} is accepted too
    Message(role, content, tool_calls, tool_call_id, name)
    Action(tool_calls: list[ToolCall] | final_answer: str, content: str | None)   # exactly one of the two
    Observation(session_id, task_id, messages: list[Message], tools: list[openai tool dict], info)
    StepResult(messages: list[Message], reward: float, done: bool, info: dict)
    ResetRequest(task_id | task_spec, seed)

Server side (`environment.py`, `tools.py`):
    class Environment(ABC):             # one instance per session, created by a zero-arg factory
        name, description, version: ClassVar[str]; blocking: ClassVar[bool] (True -> run in threads)
        reset(task_id=None, task_spec=None, seed=None) -> Observation   # raise UnknownTaskError/EnvError
        step(action: Action) -> StepResult                               # raise EnvError for bad requests
        state() -> dict; close(); tools() -> ToolRegistry; task_ids() -> list[str]
        snapshot() -> Any; restore(snap)      # optional: server restores if step raises unexpectedly
    class ToolEnvironment(Environment):  # the tool loop: fill self.registry, implement finish(answer)
        step(): each call parsed + jsonschema-validated by the registry; malformed JSON, unknown tools,
                bad arguments and ToolError become role="tool" error messages (info["tool_errors"]), never
                HTTP errors. Override after_tools(messages, errors) -> StepResult for per-step logic.
        finish(answer) -> StepResult; max_steps: ClassVar[int] (truncation -> done, info["truncated"])
    ToolSpec(name, description, parameters: JSON Schema, handler(**args) -> str|json-able, annotations)
    ToolRegistry: add(spec), @tool(...) decorator, parse(call), call(call) -> (Message, error|None),
                  openai() -> OpenAI tools list, mcp() -> MCP tools list
    ToolError(msg): raise inside a handler to return an error message to the agent.

Serving (`app.py`, `settings.py`):
    create_env_app(env_factory, settings: ServerSettings | None) -> FastAPI
    ServerSettings(token, max_sessions, idle_timeout_s, max_body_bytes, mcp, blocking); .from_env() reads
        AGENTRL_ENV_TOKEN, AGENTRL_ENV_MAX_SESSIONS, AGENTRL_ENV_IDLE_TIMEOUT_S, AGENTRL_ENV_MAX_BODY_BYTES.
    Routes: POST /sessions, POST /sessions/{id}/step, GET /sessions/{id}/state, DELETE /sessions/{id},
            GET /health (open), GET /metadata, GET /tools[?session_id], MCP at /mcp and /sessions/{id}/mcp,
            OpenEnv: POST /reset, POST /step, GET /state, GET /schema, WebSocket /ws.
    Errors: 400 EnvError, 401 auth, 404 unknown/expired session or task, 409 episode done, 422 schema,
            413 body over max_body_bytes (refused unread), 429 session cap; body {"error": "<what is wrong and where>"}.
    Each environment package exposes `environments/NAME/server.py: create_app() -> FastAPI`
    (used by `agentrl serve env NAME`).

Client (`client.py`): EnvClient / AsyncEnvClient(base_url, token, timeout, retries)  (async: aiohttp if
    installed, else httpx; transport failures raise TransportFailure, HTTP errors EnvClientError)
    reset(task: str | dict | None, seed) -> Observation; step(session_id, action) -> StepResult;
    state(session_id); close_session(session_id); tools(); metadata(); health(); close().

This package never imports torch (tests/environments/test_no_torch.py checks it).
"""

from environments.protocol.aio_backend import TransportFailure
from environments.protocol.app import create_env_app
from environments.protocol.client import AsyncEnvClient, EnvClient, EnvClientError
from environments.protocol.environment import EnvError, Environment, ToolEnvironment, UnknownTaskError
from environments.protocol.schemas import (
    PROTOCOL_VERSION,
    Action,
    Message,
    Observation,
    ResetRequest,
    SessionState,
    StepResult,
    ToolCall,
)
from environments.protocol.settings import ServerSettings
from environments.protocol.tools import ToolError, ToolRegistry, ToolSpec, schema_from_function

__all__ = [
    "PROTOCOL_VERSION",
    "Action",
    "AsyncEnvClient",
    "EnvClient",
    "EnvClientError",
    "EnvError",
    "Environment",
    "Message",
    "Observation",
    "ResetRequest",
    "ServerSettings",
    "SessionState",
    "StepResult",
    "ToolCall",
    "ToolEnvironment",
    "ToolError",
    "ToolRegistry",
    "ToolSpec",
    "TransportFailure",
    "UnknownTaskError",
    "create_env_app",
    "schema_from_function",
]
