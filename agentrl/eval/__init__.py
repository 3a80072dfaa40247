"""Evaluation of a policy on held-out tasks through the environment servers."""
