"""K2 chat format: Jinja template == Python renderer, render/parse round-trip, vLLM's kimi_k2 parser, masks."""

import json

import pytest

from model.chat_format import parse_assistant_output, render_assistant_body, render_messages, tool_call_id
from model.special_tokens import SPECIAL_TOKENS
from model.tokenizer import default_corpus, train_tokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_order",
            "description": "Look up an order.",
            "parameters": {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        },
    },
    {"type": "function", "function": {"name": "cancel", "parameters": {"type": "object", "properties": {}}}},
]


def _call(name, idx, args):
    return {
        "id": tool_call_id(name, idx),
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(args)},
    }


DIALOG = [
    {"role": "system", "content": "You are an order agent."},
    {"role": "user", "content": "Where is order A-17? Also cancel B 9."},
    {
        "role": "assistant",
        "content": "Let me check.",
        "tool_calls": [_call("get_order", 0, {"order_id": "A-17"})],
    },
    {"role": "tool", "tool_call_id": "functions.get_order:0", "content": '{"status": "shipped"}'},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [_call("get_order", 1, {"order_id": "B 9"}), _call("cancel", 2, {})],
    },
    {"role": "tool", "tool_call_id": "functions.get_order:1", "content": "not found"},
    {"role": "tool", "tool_call_id": "functions.cancel:2", "content": "ok"},
    {"role": "assistant", "content": "A-17 has shipped; B 9 was not found."},
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(default_corpus(), vocab_size=1024)


@pytest.mark.parametrize("with_tools", [True, False])
@pytest.mark.parametrize("gen", [True, False])
def test_jinja_template_equals_python_renderer(tokenizer, with_tools, gen):
    tools = TOOLS if with_tools else None
    for messages in (DIALOG, DIALOG[1:4]):  # also without a system message (default system inserted)
        jinja = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=gen
        )
        assert jinja == render_messages(messages, tools=tools, add_generation_prompt=gen)


def test_render_parse_round_trip():
    for message in DIALOG:
        if message["role"] != "assistant":
            continue
        parsed = parse_assistant_output(render_assistant_body(message))
        assert parsed.finished and not parsed.errors
        assert parsed.content == message["content"]
        expected = [
            (c["id"], c["function"]["name"], c["function"]["arguments"])
            for c in message.get("tool_calls", [])
        ]
        got = [(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in parsed.tool_calls]
        assert got == expected


def test_parser_reports_malformed_output_without_raising():
    text = "hi<|tool_calls_section_begin|><|tool_call_begin|>functions.x:0<|tool_call_argument_begin|>{"
    parsed = parse_assistant_output(text)
    assert parsed.tool_calls == [] and parsed.errors and not parsed.finished


def test_special_tokens_are_atomic_and_round_trip(tokenizer):
    text = render_messages(DIALOG, tools=TOOLS)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    for token in SPECIAL_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    assert [tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS)))


def test_assistant_mask_covers_exactly_the_assistant_turns(tokenizer):
    enc = tokenizer.apply_chat_template(
        DIALOG, tools=TOOLS, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    masked_text = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    expected = "".join(render_assistant_body(m) for m in DIALOG if m["role"] == "assistant")
    assert masked_text == expected
    # token by token: every unmasked token is outside the assistant bodies
    unmasked_text = tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
    assert "## Return of" in unmasked_text and "Where is order" in unmasked_text
    assert "Let me check." not in unmasked_text


def test_vllm_kimi_k2_parser_parses_what_we_render(tokenizer):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.tool_parsers.kimi_k2_tool_parser import KimiK2ToolParser

    parser = KimiK2ToolParser(tokenizer, tools=None, chat_template_kwargs={"thinking": False})
    request = ChatCompletionRequest(
        model="agentrl",
        messages=[{"role": "user", "content": "x"}],
        tools=TOOLS,
        chat_template_kwargs={"thinking": False},
    )
    for message in DIALOG:
        if message["role"] != "assistant" or not message.get("tool_calls"):
            continue
        info = parser.extract_tool_calls(render_assistant_body(message), request)
        assert info.tools_called
        got = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in info.tool_calls]
        want = [
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in message["tool_calls"]
        ]
        assert got == want
        assert (info.content or "") == message["content"]
