"""`agentrl serve env reasoning`: the reasoning environment server."""

from __future__ import annotations

from fastapi import FastAPI

from environments.protocol import ServerSettings, create_env_app
from environments.reasoning.env import ReasoningEnv


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    return create_env_app(ReasoningEnv, settings)
