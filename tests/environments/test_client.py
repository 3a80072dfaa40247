"""EnvClient / AsyncEnvClient against a real server: API, errors, timeouts, retries."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from environments.protocol import (
    Action,
    AsyncEnvClient,
    EnvClient,
    EnvClientError,
    ToolCall,
    TransportFailure,
)
from tests.environments.conftest import free_port


def test_sync_client_episode(kv_url):
    with EnvClient(kv_url, timeout=10) as env:
        assert env.health()["status"] == "healthy"
        assert env.metadata()["name"] == "kv"
        obs = env.reset("kv-1")
        assert env.tools(obs.session_id)[0]["function"]["name"] == "set_value"
        r = env.step(
            obs.session_id,
            Action(
                tool_calls=[ToolCall(id="1", name="set_value", arguments='{"key": "color", "value": "blue"}')]
            ),
        )
        assert r.messages[0].content == "ok"
        r = env.step(obs.session_id, {"final_answer": "blue"})
        assert r.done and r.reward == 1.0
        assert env.state(obs.session_id).done
        with pytest.raises(EnvClientError) as e:
            env.step(obs.session_id, {"final_answer": "blue"})
        assert e.value.status_code == 409
        env.close_session(obs.session_id)
        with pytest.raises(EnvClientError, match="unknown task"):
            env.reset("nope")
        with pytest.raises(TypeError, match="task must be"):
            env.reset(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="needs tool_calls"):
            env.step("x", {})


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
def test_async_client_concurrent_sessions(kv_url, backend):
    async def one(env: AsyncEnvClient, i: int) -> float:
        obs = await env.reset({"pairs": {"k": str(i)}, "ask": "k"})
        call = ToolCall(id="1", name="set_value", arguments=f'{{"key": "k", "value": "{i}"}}')
        await env.step(obs.session_id, Action(tool_calls=[call]))
        r = await env.step(obs.session_id, Action(final_answer=str(i)))
        await env.close_session(obs.session_id)
        return r.reward

    async def main():
        async with AsyncEnvClient(kv_url, timeout=10, backend=backend) as env:
            assert env.backend == backend
            with pytest.raises(EnvClientError, match="unknown task") as e:
                await env.reset("nope")
            assert e.value.status_code == 404
            return await asyncio.gather(*(one(env, i) for i in range(20)))

    assert asyncio.run(main()) == [1.0] * 20


def test_client_gives_up_after_retries_on_dead_server():
    env = EnvClient(f"http://127.0.0.1:{free_port()}", timeout=1, retries=2, backoff_s=0.01)
    with pytest.raises(httpx.ConnectError):
        env.reset()


def test_client_retries_429_then_succeeds():
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] < 3:
            return httpx.Response(429, json={"error": "too many sessions"})
        return httpx.Response(201, json={"session_id": "s", "messages": [{"role": "user", "content": "hi"}]})

    env = EnvClient("http://test", retries=3, backoff_s=0.001, transport=httpx.MockTransport(handler))
    assert env.reset().session_id == "s" and calls["n"] == 3
    calls["n"] = -10
    env2 = EnvClient("http://test", retries=1, backoff_s=0.001, transport=httpx.MockTransport(handler))
    with pytest.raises(EnvClientError, match="too many sessions"):
        env2.reset()


@pytest.mark.parametrize("backend", ["aiohttp", "httpx"])
def test_async_client_connect_failure_is_retried_then_raised(backend):
    async def main():
        env = AsyncEnvClient(
            f"http://127.0.0.1:{free_port()}", timeout=1, retries=2, backoff_s=0.01, backend=backend
        )
        try:
            with pytest.raises(TransportFailure, match="cannot connect") as e:
                await env.reset()
            assert e.value.sent is False
        finally:
            await env.close()

    asyncio.run(main())
