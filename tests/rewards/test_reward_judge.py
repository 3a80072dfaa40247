"""LLM judge against a real local HTTP server with canned completions (malformed output, retries, limits).

The real-vLLM judge test is at the bottom; it needs the `vllm_server_url` fixture (see conftest.py).
"""

import json

import pytest

from agentrl.rewards.judge import Judge, JudgeConfig, VerdictError, parse_verdict, verdict_schema
from agentrl.rewards.judge_cache import SQLiteCache
from agentrl.rewards.openai_client import ChatClient, ChatClientConfig, ChatError, RateLimiter
from agentrl.schemas.trajectory import Trajectory

TRAJ = Trajectory(
    id="t1",
    task_id="q",
    messages=[
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ],
)


def _judge(url, scenario, rubrics, **kw):
    cfg = JudgeConfig(base_url=url, model=scenario, **{"max_retries": 2, "backoff_base_s": 0.01, **kw})
    return Judge(cfg, rubrics)


def test_good_verdict_scored_and_accounted(fake_openai_server, small_rubrics, request):
    url, app = fake_openai_server
    j = _judge(
        url,
        f"good:{request.node.name}",
        small_rubrics,
        api_key="sekrit",
        price_per_mtok_in=2.0,
        price_per_mtok_out=10.0,
    )
    r = j.score(TRAJ)
    assert not r.abstained and r.value == pytest.approx(0.8)
    assert set(r.details["verdicts"]) == {"r.clarity", "r.praise"}
    body = app.state.bodies[-1]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == verdict_schema(["r.clarity", "r.praise"])
    assert "Capital of France?" in body["messages"][1]["content"]
    assert "r.praise" in body["messages"][0]["content"] and "(mandatory)" in body["messages"][0]["content"]
    assert body["response_format"]["json_schema"]["schema"]["properties"]["verdicts"]["required"] == [
        "r.clarity",
        "r.praise",
    ]
    assert app.state.headers[-1]["authorization"] == "Bearer sekrit"
    usage = j.stats()["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (100, 20)
    assert usage["cost_usd"] == pytest.approx((100 * 2.0 + 20 * 10.0) / 1e6)


def test_fenced_json_accepted(fake_openai_server, small_rubrics, request):
    j = _judge(fake_openai_server[0], f"fenced:{request.node.name}", small_rubrics)
    assert j.score(TRAJ).value == pytest.approx(0.6)


def test_mandatory_rubric_failure_zeroes(fake_openai_server, small_rubrics, request):
    r = _judge(fake_openai_server[0], f"praise_fail:{request.node.name}", small_rubrics).score(TRAJ)
    assert r.value == 0.0 and not r.abstained


@pytest.mark.parametrize(
    ("scenario", "reason"),
    [
        ("malformed_json", "malformed:bad_json"),
        ("prose", "malformed:no_json"),
        ("wrong_schema", "malformed:schema"),
        ("no_choices", "call_failed:bad_response"),
        ("always_500", "call_failed:gave_up"),
        ("bad_request", "call_failed:http_400"),
    ],
)
def test_failures_abstain_and_are_counted(fake_openai_server, small_rubrics, scenario, reason, request):
    url, app = fake_openai_server
    model = f"{scenario}:{request.node.name}"
    j = _judge(url, model, small_rubrics, malformed_retries=1)
    r = j.score(TRAJ)
    assert r.abstained and r.value == 0.0 and r.details["abstain_reason"] == reason
    stats = j.stats()
    assert stats["abstentions"] == {reason: 1} and stats["abstention_rate"] == 1.0
    expected_calls = {"malformed_json": 2, "prose": 2, "wrong_schema": 2, "always_500": 3, "bad_request": 1}
    if scenario in expected_calls:
        assert app.state.calls[model] == expected_calls[scenario]  # re-asks / retries, but no retry on 400
    # abstentions are not cached: a second call asks again
    j.score(TRAJ)
    assert j.stats()["abstentions"] == {reason: 2}


def test_retries_recover(fake_openai_server, small_rubrics, request):
    url, app = fake_openai_server
    for scenario, calls in (("flaky_500", 3), ("rate_429", 2), ("malformed_then_good", 2)):
        model = f"{scenario}:{request.node.name}"
        j = _judge(url, model, small_rubrics)
        r = j.score(TRAJ)
        assert not r.abstained and r.value == pytest.approx(0.8), scenario
        assert app.state.calls[model] == calls, scenario
    assert j.client.stats.as_dict()["requests"] == 2


def test_timeout_abstains_quickly(fake_openai_server, small_rubrics, request):
    j = _judge(
        fake_openai_server[0], f"slow:{request.node.name}", small_rubrics, timeout_s=0.2, max_retries=0
    )
    r = j.score(TRAJ)
    assert r.abstained and r.details["abstain_reason"] == "call_failed:gave_up"
    assert j.stats()["usage"]["errors"] == {"timeout": 1}


def test_unreachable_server_abstains(small_rubrics):
    j = Judge(JudgeConfig(base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_base_s=0.0), small_rubrics)
    r = j.score(TRAJ)
    assert r.abstained and "transport" in r.details["error"]


def test_cache_memory_and_sqlite(fake_openai_server, small_rubrics, tmp_path, request):
    url, app = fake_openai_server
    model = f"good:{request.node.name}"
    j = _judge(url, model, small_rubrics, cache_path=str(tmp_path / "c.sqlite"))
    first = j.score(TRAJ)
    second = j.score(TRAJ)
    assert second.value == first.value and second.details["cached"] is True
    assert app.state.calls[model] == 1 and j.stats()["cache_hits"] == 1
    other = TRAJ.model_copy(
        update={"messages": [*TRAJ.messages[:2], {"role": "assistant", "content": "Lyon."}]}
    )
    j.score(other)
    assert app.state.calls[model] == 2  # a different transcript is a different key
    j.close()
    # A new judge on the same file reuses the verdicts across runs.
    j2 = _judge(url, model, small_rubrics, cache_path=str(tmp_path / "c.sqlite"))
    assert j2.score(TRAJ).details.get("cached") is True and app.state.calls[model] == 2
    assert len(SQLiteCache(tmp_path / "c.sqlite")) == 2
    # Editing a rubric's text changes the key.
    edited = [small_rubrics[0].model_copy(update={"description": "Be very clear."}), small_rubrics[1]]
    j3 = _judge(url, model, edited, cache_path=str(tmp_path / "c.sqlite"))
    assert "cached" not in j3.score(TRAJ).details


def test_score_many_keeps_order(fake_openai_server, small_rubrics, request):
    j = _judge(fake_openai_server[0], f"good:{request.node.name}", small_rubrics, max_concurrency=4)
    items = [(f"answer {i}", None) for i in range(8)]
    results = j.score_many(items)
    assert len(results) == 8 and all(r.value == pytest.approx(0.8) for r in results)
    assert j.stats()["scored"] == 8


def test_task_rubric_selection(fake_openai_server, repo_rubrics, request):
    url, app = fake_openai_server
    j = _judge(url, f"good:{request.node.name}", repo_rubrics)
    j.score(TRAJ, {"id": "retail-refund-001"})
    ids = app.state.bodies[-1]["response_format"]["json_schema"]["schema"]["properties"]["verdicts"][
        "required"
    ]
    assert "task.example.refund_order" in ids
    j.score(TRAJ, {"rubric_ids": ["core.clarity_relevance"]})
    assert "core.clarity_relevance" in app.state.bodies[-1]["messages"][0]["content"]
    assert "prescriptive.initial_praise" not in app.state.bodies[-1]["messages"][0]["content"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "no_json"),
        ("I rate it 8.", "no_json"),
        ("{", "bad_json"),
        ('{"verdicts": {]}', "bad_json"),
        ('{"verdicts": {}}', "schema"),  # a rubric left out
        ('{"verdicts": {"a": {"reason": "", "score": "8"}}}', "schema"),  # score as a string
        ('{"verdicts": {"a": {"reason": "", "score": 11}}}', "schema"),  # out of range
        ('{"verdicts": {"a": {"reason": "", "score": 8}, "zzz": {"reason": "", "score": 1}}}', "schema"),
        ('{"verdicts": {"a": {"score": 8}}}', "schema"),  # no reason
        ('{"verdicts": {"a": {"reason": "", "score": 8}}, "extra": 1}', "schema"),
        ('{"verdicts": [{"rubric_id": "a", "score": 8, "reason": ""}]}', "schema"),  # the old list shape
    ],
)
def test_parse_verdict_malformed(text, reason):
    with pytest.raises(VerdictError) as e:
        parse_verdict(text, ["a"])
    assert e.value.reason == reason


def test_parse_verdict_good_with_prose_and_long_reason():
    text = (
        'Here you go:\n{"verdicts": {"a": {"reason": "clear", "score": 7}, "b": {"reason": "", "score": 0}}}'
    )
    assert parse_verdict(text, ["a", "b"]) == {
        "a": {"score": 7, "reason": "clear"},
        "b": {"score": 0, "reason": ""},
    }
    too_long = json.dumps({"verdicts": {"a": {"reason": "x" * 301, "score": 7}}})
    with pytest.raises(VerdictError):
        parse_verdict(too_long, ["a"])


def test_guided_json_mode(fake_openai_server, request):
    url, app = fake_openai_server
    client = ChatClient(
        ChatClientConfig(base_url=url, model=f"good:{request.node.name}", structured="guided_json")
    )
    client.chat([{"role": "user", "content": "x"}], json_schema=verdict_schema(["a"]))
    assert "guided_json" in app.state.bodies[-1] and "response_format" not in app.state.bodies[-1]
    with pytest.raises(ChatError):
        ChatClient(ChatClientConfig(base_url=url, model="bad_request:x", max_retries=0)).chat([])


def test_rate_limiter_spaces_requests():
    limiter = RateLimiter(rps=10.0)
    first, second = limiter.acquire(), limiter.acquire()
    assert first == 0.0 and second > 0.0  # the second caller waited for its slot (up to 0.1 s)
    assert RateLimiter(None).acquire() == 0.0


@pytest.mark.slow
def test_judge_real_vllm(vllm_server_url, small_rubrics):
    """Structured verdicts from a real vLLM server (guided decoding makes even a tiny model parse)."""
    import httpx

    model = httpx.get(f"{vllm_server_url}/models", timeout=10).json()["data"][0]["id"]
    # Guided decoding makes a random-init model's verdict parse; the scores themselves are noise.
    j = Judge(
        JudgeConfig(base_url=vllm_server_url, model=model, max_tokens=256, timeout_s=120), small_rubrics
    )
    r = j.score(TRAJ)
    assert not r.abstained, r.details
    assert 0.0 <= r.value <= 1.0 and set(r.details["verdicts"]) == {"r.clarity", "r.praise"}
    assert j.stats()["usage"]["prompt_tokens"] > 0
