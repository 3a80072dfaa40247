"""User-facing errors. The CLI prints these as one clear line and exits 2, never a traceback."""


class AgentRLError(Exception):
    """Base class for errors caused by user input (configs, files, arguments)."""


class ConfigError(AgentRLError):
    """A config file or override is malformed, unknown or out of range."""
