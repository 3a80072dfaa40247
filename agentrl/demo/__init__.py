"""`agentrl demo`: the whole K2 post-training pipeline on the embedded default (see pipeline.py)."""

from agentrl.demo.pipeline import run_demo

__all__ = ["run_demo"]
