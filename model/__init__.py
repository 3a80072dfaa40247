"""The K2-architecture MoE policy: presets over transformers' DeepseekV3, max-logit tracking for QK-Clip,
the QK-Clip row map, the K2 tokenizer and chat template, and HF-format checkpoint I/O.

This package holds no distributed or training code (see agentrl/ for that).
"""
