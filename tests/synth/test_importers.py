"""Tool repository imports: OpenAI / BFCL function files and a real MCP server over stdio."""

from __future__ import annotations

import json
import random
import sys
import textwrap

import pytest

from agentrl.synth.config import McpServerConfig
from agentrl.synth.importers import ToolImportError, import_function_file, import_mcp_server, imported_domain
from agentrl.synth.task_writer import write_templates
from environments.tool_world.taskgen import instantiate
from tests.tool_world.conftest import run_gold

OPENAI = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                    "required": ["city", "unit"]}}},
    {"name": "send_mail", "description": "Send an e-mail.",
     "parameters": {"type": "object", "properties": {"to": {"type": "string"}, "n": {"type": "integer"}}, "required": ["to", "n"]}},
]  # fmt: skip
BFCL = {
    "id": "simple_0",
    "question": [[{"role": "user", "content": "area?"}]],
    "function": [{"name": "math.triangle_area", "description": "Area of a triangle.",
                  "parameters": {"type": "dict", "properties": {"base": {"type": "float"}, "dims": {"type": "tuple", "items": {"type": "integer"}},
                                 "extra": {"type": "any"}}, "required": ["base"]}}],
}  # fmt: skip


def test_openai_and_bfcl_function_files(tmp_path):
    (tmp_path / "tools.json").write_text(json.dumps(OPENAI))
    (tmp_path / "bfcl.jsonl").write_text(json.dumps(BFCL) + "\n\n" + json.dumps(BFCL) + "\n")
    tools = import_function_file(tmp_path / "tools.json")
    assert [t.name for t in tools] == ["get_weather", "send_mail"]
    assert tools[0].parameters["properties"]["unit"]["enum"] == ["c", "f"] and tools[0].op.kind == "record"
    bfcl = import_function_file(tmp_path / "bfcl.jsonl")
    assert len(bfcl) == 1 and bfcl[0].name == "math_triangle_area"  # dots are not allowed in K2 call ids
    props = bfcl[0].parameters["properties"]
    assert bfcl[0].parameters["type"] == "object" and props["base"]["type"] == "number"
    assert props["dims"]["type"] == "array" and "type" not in props["extra"]


def test_imported_tools_become_executable_tasks(tmp_path):
    (tmp_path / "tools.json").write_text(json.dumps(OPENAI))
    domain = imported_domain("fn_tools", import_function_file(tmp_path / "tools.json"), "test")
    templates = write_templates(domain)
    assert {t.id for t in templates} == {"call_get_weather", "call_send_mail"}
    d = domain.model_copy(update={"templates": templates})
    for tpl in templates:
        task = instantiate(d, tpl, random.Random(0), split="heldout", task_id=tpl.id)
        reward, details, session = run_gold(task)
        assert reward == 1.0, details
        assert session.state["_calls"][0]["tool"] == tpl.plan[0].tool


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("bad.json", json.dumps([OPENAI[0], {"name": "x", "parameters": {"type": "object", "properties": {"a": {"type": 3}}}}]),
         "record 1 function 0 (x): malformed tool schema"),
        ("bad2.json", json.dumps([{"description": "no name"}]), "record 0 function 0 (?): malformed tool schema"),
        ("broken.jsonl", json.dumps(BFCL) + "\n{not json\n", "broken.jsonl:2: broken JSONL line"),
        ("broken.json", '[{"name": "a",\n  oops}]', "broken.json:2: malformed JSON"),
        ("empty.json", "[]", "no function definitions"),
        ("req.json", json.dumps([{"name": "r", "parameters": {"type": "object", "properties": {}, "required": ["zz"]}}]),
         "record 0 function 0 (r)"),
    ],
)  # fmt: skip
def test_malformed_function_files_name_the_record(tmp_path, name, text, needle):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ToolImportError) as exc:
        import_function_file(path)
    assert needle in str(exc.value) and str(path) in str(exc.value)


MCP_SERVER = textwrap.dedent(
    '''
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("weather")

    @mcp.tool()
    def get_forecast(city: str, days: int = 1) -> str:
        """Get the weather forecast for a city."""
        return f"sunny in {city}"

    @mcp.tool()
    def set_alarm(time: str, label: str) -> str:
        """Set an alarm."""
        return "ok"

    if __name__ == "__main__":
        mcp.run()
    '''
)


@pytest.mark.slow
def test_mcp_import_from_a_real_stdio_server(tmp_path):
    script = tmp_path / "server.py"
    script.write_text(MCP_SERVER)
    tools = import_mcp_server(
        McpServerConfig(name="weather", command=sys.executable, args=[str(script)], timeout_s=60)
    )
    by_name = {t.name: t for t in tools}
    assert set(by_name) == {"get_forecast", "set_alarm"}
    fc = by_name["get_forecast"]
    assert fc.description == "Get the weather forecast for a city." and fc.source == "mcp:weather"
    assert fc.parameters["required"] == ["city"] and fc.parameters["properties"]["days"]["type"] == "integer"
    assert "title" not in fc.parameters
    templates = write_templates(imported_domain("mcp_weather", tools, "MCP"))
    assert {t.id for t in templates} == {"call_get_forecast", "call_set_alarm"}


def test_mcp_errors_name_the_server():
    with pytest.raises(ToolImportError, match=r"MCP server 'nope' \(/nonexistent/cmd\): FileNotFoundError"):
        import_mcp_server(McpServerConfig(name="nope", command="/nonexistent/cmd", timeout_s=10))
    with pytest.raises(ToolImportError, match=r"MCP server 'dead' .*Connection closed"):
        import_mcp_server(
            McpServerConfig(name="dead", command=sys.executable, args=["-c", "pass"], timeout_s=20)
        )
    with pytest.raises(ValueError, match="exactly one of"):
        McpServerConfig(name="both", command="x", url="http://y")


@pytest.mark.slow
def test_mcp_import_over_streamable_http():
    """tools/list over HTTP, from tool_world's own MCP endpoint of a live session (a real MCP server)."""
    import httpx

    from environments.protocol import ServerSettings
    from environments.tool_world.server import builtin_tasks, create_app
    from tests.tool_world.test_server import _serve

    tasks = builtin_tasks(per_template=1)
    task = tasks["clinic.rebook.train.0"]
    with _serve(create_app(ServerSettings(), tasks=tasks)) as base:
        sid = httpx.post(base + "/sessions", json={"task_id": task.id}).json()["session_id"]
        tools = import_mcp_server(McpServerConfig(name="tw", url=f"{base}/sessions/{sid}/mcp", timeout_s=30))
    assert [t.name for t in tools] == [t.name for t in task.tools]
    assert all(t.source == "mcp:tw" and t.op.kind == "record" for t in tools)
    assert tools[0].parameters == task.tools[0].parameters
