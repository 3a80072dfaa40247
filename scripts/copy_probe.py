"""Teacher-forced copy accuracy of a checkpoint (a diagnostic for the demo's SFT, see BENCHMARKS.md).

Over the last `--records` SFT records: at every assistant token that is an entity token (a non-special added token
that is not a number, i.e. `train_tokenizer(entities=...)`) and already occurs earlier in the context, does the
model's argmax predict it? Chance is about 1 / (entities of that kind). Needs a tokenizer with entity tokens.

    .venv/bin/python scripts/copy_probe.py CHECKPOINT TRAJECTORIES.jsonl [--records 200]
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentrl.train.sft import read_jsonl, tokenize_records

    parser = argparse.ArgumentParser()
    parser.add_argument("checkpoint")
    parser.add_argument("data")
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()
    tok = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint).eval()
    entity_ids = {
        tok.convert_tokens_to_ids(t.content)
        for t in tok.added_tokens_decoder.values()
        if not t.special and not t.content.isdigit()
    }
    if not entity_ids:
        raise SystemExit(f"{args.checkpoint}: the tokenizer has no entity tokens to probe")
    columns, _ = tokenize_records(read_jsonl(args.data)[-args.records :], tok, max_length=100_000)
    hits = total = 0
    with torch.no_grad():
        for ids, mask in zip(columns["input_ids"], columns["assistant_masks"], strict=True):
            predicted = model(input_ids=torch.tensor([ids])).logits[0].argmax(-1)  # [T]
            for i in range(1, len(ids)):
                if mask[i] and ids[i] in entity_ids and ids[i] in ids[:i]:
                    total += 1
                    hits += int(predicted[i - 1].item() == ids[i])
    print(
        json.dumps({"checkpoint": args.checkpoint, "copy_accuracy": hits / max(total, 1), "positions": total})
    )


if __name__ == "__main__":
    main()
