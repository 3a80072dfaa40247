"""Byte-level BPE tokenizer for the small presets, trained offline with `tokenizers` on the project's corpus.

Digits are split individually before BPE so the tiny policy copies numbers digit by digit (entity values in held-out
tasks are never seen in training). K2's special tokens get fixed ids 0..12 and are never split or merged.

`isolate_spaces=True` (off by default) makes every space its own pre-token. Byte-level BPE otherwise glues a word
to the space before it, so a name tokenizes differently in prose (`" Lonu"` -> `" L" "on" "u"`) and inside JSON
arguments (`"Lonu"` -> `"L" "on" "u"`), and copying a name from the user turn into a tool call becomes a learned
mapping instead of a plain copy of token ids. The price is about one extra token per space.

`entities` (off by default) are whole words that each become one token wherever they stand alone: the closed pool
of entity values (environments/tool_world/values.py) plus, with `whole_numbers=N`, the integers 0..N-1. A tiny
policy then copies a name, a code or an amount as one token id instead of spelling it piece by piece (measured
in BENCHMARKS.md: k2-tiny still needs ~1,100 SFT steps of batch 8 before it copies). They are `AddedToken(single_word=True)`:
"Dema" inside "Demand" is left to BPE. They count against `vocab_size`.

`keys` (off by default) are JSON argument keys with their punctuation, e.g. `"city":"`, each made one token (an
`AddedToken` matched anywhere). Byte-level BPE cannot merge across `"`, `city` and `":"` (its pre-tokenizer splits
them), so without this the token just before a copied value is `":"` for every key, and the head that picks which
context value to copy must first fetch the key from two tokens back. With one token per key, the token before the
value names what it wants (measured in BENCHMARKS.md, "Tenth session").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from model.special_tokens import BOS, EOS, IM_END, PAD, SPECIAL_TOKENS

ASSETS = Path(__file__).parent / "assets"
CHAT_TEMPLATE_PATH = ASSETS / "chat_template.jinja"


def chat_template() -> str:
    return CHAT_TEMPLATE_PATH.read_text()


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 2048,
    *,
    isolate_spaces: bool = False,
    entities: Sequence[str] = (),
    whole_numbers: int = 0,
    keys: Sequence[str] = (),
):  # -> PreTrainedTokenizerFast
    """Train a byte-level BPE on `texts` and wrap it as a transformers tokenizer with the K2 chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = list(dict.fromkeys([*entities, *(str(n) for n in range(whole_numbers))]))
    bad = [w for w in words if not w or not all(c.isalnum() for c in w)]
    if bad:
        raise ValueError(f"entities must be non-empty alphanumeric words, got {bad[:5]}")
    bad_keys = [k for k in keys if not k or k.strip() != k]
    if bad_keys:
        raise ValueError(f"keys must be non-empty strings without surrounding spaces, got {bad_keys[:5]}")
    keys = list(dict.fromkeys(keys))
    bpe_size = vocab_size - len(words) - len(keys)
    if bpe_size < len(SPECIAL_TOKENS) + 256 + 1:
        raise ValueError(
            f"vocab_size {vocab_size} is too small for 256 bytes plus {len(SPECIAL_TOKENS)} specials"
            + (f" plus {len(words)} entity tokens" if words else "")
            + (f" plus {len(keys)} key tokens" if keys else "")
        )
    tok = Tokenizer(models.BPE())
    steps = [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    if isolate_spaces:
        steps.insert(0, pre_tokenizers.Split(" ", behavior="isolated"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(steps)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(w, single_word=True, normalized=False) for w in words])
    tok.add_tokens([AddedToken(k, normalized=False) for k in keys])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=SPECIAL_TOKENS[3:],
    )
    wrapped.chat_template = chat_template()
    # Generation stops at the end of the assistant turn.
    wrapped.init_kwargs["stop_token"] = IM_END
    return wrapped


def default_corpus() -> list[str]:
    """A small built-in corpus: the chat-format skeleton, JSON punctuation, digits and common English.

    The demo retrains on its synthetic train split instead; this is the fallback when no data exists yet.
    """
    from model.chat_format import render_messages

    words = [
        "the",
        "a",
        "an",
        "of",
        "to",
        "and",
        "in",
        "is",
        "for",
        "on",
        "with",
        "as",
        "by",
        "at",
        "from",
        "that",
        "this",
        "it",
        "be",
        "are",
        "was",
        "or",
        "your",
        "you",
        "can",
        "please",
        "find",
        "get",
        "set",
        "list",
        "add",
        "remove",
        "update",
        "create",
        "delete",
        "search",
        "order",
        "user",
        "account",
        "book",
        "flight",
        "hotel",
        "city",
        "date",
        "time",
        "name",
        "email",
        "id",
        "status",
        "price",
        "total",
        "item",
        "items",
        "result",
        "results",
        "error",
        "not",
        "found",
        "ok",
        "done",
        "true",
        "false",
        "null",
        "none",
        "tool",
        "tools",
        "function",
        "functions",
        "call",
        "calls",
        "return",
        "returned",
        "answer",
        "question",
        "help",
        "I",
        "will",
        "here",
        "weather",
        "temperature",
        "room",
        "device",
        "light",
        "on",
        "off",
        "balance",
        "transfer",
        "amount",
        "message",
        "send",
        "contact",
        "calendar",
        "event",
    ]
    texts = [" ".join(words[i:] + words[:i]) for i in range(0, len(words), 7)]
    sample = [
        {"role": "system", "content": "You are a helpful agent. Use the tools."},
        {"role": "user", "content": "Find the order 12345 for alice@example.com please."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "functions.get_order:0",
                    "type": "function",
                    "function": {"name": "get_order", "arguments": '{"order_id": "12345"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "functions.get_order:0", "content": '{"status": "shipped"}'},
        {"role": "assistant", "content": "Your order 12345 has shipped."},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_order",
                "description": "Look up an order by id.",
                "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
            },
        }
    ]
    texts += [render_messages(sample, tools=tools)] * 4
    texts += [" ".join(str(i) for i in range(200))]
    return texts
