"""Short-context SFT windows: one per assistant turn, the turn's own context only, chat format unchanged."""

from agentrl.train.turn_windows import turn_windows
from model.chat_format import IM_SYSTEM, render_messages

_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {
            "id": "functions.find_ticket:0",
            "type": "function",
            "function": {"name": "find_ticket", "arguments": '{"client":"Geso"}'},
        }
    ],
}
_RECORD = {
    "tools": [{"type": "function", "function": {"name": "find_ticket", "parameters": {"type": "object"}}}],
    "messages": [
        {"role": "system", "content": "You manage tickets."},
        {"role": "user", "content": "Which ticket is Geso's?"},
        _CALL,
        {
            "role": "tool",
            "tool_call_id": "functions.find_ticket:0",
            "name": "find_ticket",
            "content": '{"id":"Q57P"}',
        },
        {"role": "assistant", "content": "It is Q57P."},
        {"role": "user", "content": "Thanks. And Hala's?"},
        {"role": "assistant", "content": "Let me check."},
    ],
}


def test_one_window_per_assistant_turn_starting_at_the_latest_user_message():
    windows = list(turn_windows([_RECORD]))
    assert [len(w["messages"]) for w in windows] == [3, 5, 3]
    first, second, third = (w["messages"] for w in windows)
    assert first[1:] == _RECORD["messages"][1:3]
    assert second[1:] == _RECORD["messages"][1:5]
    assert third[1:] == _RECORD["messages"][5:7]
    for window in windows:
        assert window["messages"][0] == {"role": "system", "content": ""}
        assert window["messages"][-1]["role"] == "assistant"
        assert "tools" not in window


def test_window_renders_without_declarations_or_the_default_system_prompt():
    text = render_messages(next(turn_windows([_RECORD]))["messages"])
    assert text.count(IM_SYSTEM) == 1  # the empty system turn only: no tool_declare block, no "You are Kimi"
    assert "Kimi" not in text and "You manage tickets." not in text
    assert text.endswith(render_messages([_CALL])[-60:])


def test_assistant_turns_before_any_user_message_are_skipped():
    record = {"messages": [{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Hi"}]}
    assert list(turn_windows([record])) == []
