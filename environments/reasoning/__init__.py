"""Reasoning environment: verifiable single-answer tasks from offline seeded generators."""
