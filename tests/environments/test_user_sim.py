"""User simulator: procedural persona replies, and the LLM-backed user over a real HTTP endpoint."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from environments.user_sim import STOP, LLMConfig, LLMUser, Persona, ProceduralUser, UserSimError, make_user
from tests.environments.conftest import serve

PERSONA = Persona(
    goal="I want to cancel order #W42.", known_info={"order id": "#W42", "zip code": "10115"}, max_turns=6
)


def test_procedural_user_answers_confirms_and_stops():
    u = ProceduralUser(PERSONA, seed=0)
    assert "#W42" in u.start()
    t = u.reply("Can you give me your order ID and ZIP code?")
    assert "#W42" in t.text and "10115" in t.text and not t.done
    assert u.reply("Shall I proceed with the cancellation?").text == "Yes, please go ahead."
    t = u.reply("It's cancelled. Is there anything else I can help with?")
    assert t.done and STOP in t.text
    assert u.reply("hello?").done


def test_procedural_user_is_seeded_and_bounded():
    a = [ProceduralUser(PERSONA.model_copy(update={"style": "chatty"}), seed=s).start() for s in range(6)]
    b = [ProceduralUser(PERSONA.model_copy(update={"style": "chatty"}), seed=s).start() for s in range(6)]
    assert a == b and len(set(a)) > 1
    declines = ProceduralUser(PERSONA.model_copy(update={"confirm": False}))
    declines.start()
    assert declines.reply("Should I go ahead?").text.startswith("No")
    u = ProceduralUser(PERSONA, seed=1)
    u.start()
    turns = [u.reply("Hmm, let me look into it.") for _ in range(10)]
    assert any(t.done for t in turns) and sum(not t.done for t in turns) <= PERSONA.max_turns


def test_make_user_picks_procedural_without_endpoint(monkeypatch):
    monkeypatch.delenv("AGENTRL_USER_SIM_URL", raising=False)
    assert isinstance(make_user(PERSONA), ProceduralUser)
    monkeypatch.setenv("AGENTRL_USER_SIM_URL", "http://127.0.0.1:9/v1")
    assert isinstance(make_user(PERSONA), LLMUser)


def _llm_app(seen: list) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health():
        return {"ok": True}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append(body)
        last = body["messages"][-1]["content"].lower()
        if "slow" in last:
            time.sleep(1.0)
        if "crash" in last:
            return JSONResponse({"error": "boom"}, status_code=500)
        if "garbage" in last:
            return {"choices": []}
        text = (
            "Yes, thanks, that's all. " + STOP
            if "anything else" in last
            else f"(to {body['model']}) I need help."
        )
        return {"choices": [{"message": {"role": "assistant", "content": text}}]}

    return app


@pytest.mark.slow
def test_llm_user_over_openai_compatible_endpoint():
    seen: list = []
    with serve(_llm_app(seen)) as url:
        cfg = LLMConfig(base_url=url + "/v1", model="sim", timeout_s=0.5)
        u = make_user(PERSONA, llm=cfg)
        assert u.start() == "(to sim) I need help."
        assert seen[0]["messages"][0]["role"] == "system" and "#W42" in seen[0]["messages"][0]["content"]
        t = u.reply("Done. Anything else?")
        assert t.done and STOP in t.text
        # roles are flipped: agent turns are `user` messages for the simulator model
        assert [m["role"] for m in seen[-1]["messages"]][-1] == "user"
        for trigger, needle in [("crash", "HTTP 500"), ("garbage", "malformed"), ("slow", "Timeout")]:
            u2 = LLMUser(PERSONA, cfg)
            with pytest.raises(UserSimError, match=needle):
                u2.reply(trigger)
