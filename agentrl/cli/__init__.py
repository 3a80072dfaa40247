"""The `agentrl` command line."""
