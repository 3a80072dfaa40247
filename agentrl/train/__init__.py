"""The RL trainer (issue #8): objectives, schedules, budgets, PTX, routing metrics, checkpoints and the loop.

Entry point: `agentrl.train.rl_loop.RLTrainer`. See docs/rl.md. Nothing runs at import time.
"""
