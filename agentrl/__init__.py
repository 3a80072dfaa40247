"""agentrl: agentic post-training by reinforcement learning, following Kimi K2's recipe.

Importing this package is cheap and torch-free; heavy stacks are imported by the modules that need them.
"""

__version__ = "0.1.0"
