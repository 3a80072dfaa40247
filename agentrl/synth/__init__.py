"""`agentrl synth`: K2's synthetic tool-use data pipeline (§3.1): tools -> agents and tasks -> judged trajectories.

Entry points: `pipeline.run_synth(SynthConfig | dict) -> stats`, `config.SynthConfig`, and for the eval / RL
stages `tasklists.task_lists(config)` (held-out and RL task specs tool_world resets with) and
`environments.tool_world.scoring.score_episode` (the pure-Python reward). Details: docs/synth.md.
"""
