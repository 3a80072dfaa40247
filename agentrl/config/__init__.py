"""Typed config tree loaded from YAML files in configs/ with dotted CLI overrides."""

from agentrl.config.loader import load_config, parse_overrides, write_run_metadata

__all__ = ["load_config", "parse_overrides", "write_run_metadata"]
