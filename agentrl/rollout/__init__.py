"""Rollouts: the token-in/token-out agent loop, environment access, workers and partial rollouts."""
