"""Inference engines: `generate(token_ids, sampling) -> tokens + logprobs` and `load_weights(named_tensors)`."""
