"""tool_world: K2's "tool simulator" (§3.1), a stateful simulated world for tool-use episodes.

Stable API (pure Python, torch-free; the HTTP server in `server.py` wraps the same session):
    TaskSpec / DomainSpec / ToolSpec / OpSpec          spec.py      data model (JSON/YAML)
    load_domains(paths) / builtin_domains()            domains.py   domain files -> DomainSpec
    instantiate(domain, template, rng, split=...)      taskgen.py   template -> concrete TaskSpec
    WorldSession(task, seed).call(name, args_json)     session.py   one episode, never raises on bad input
    score_episode(task, final_state, final_answer)     scoring.py   -> (reward, details), tau-bench style
    create_app() / ToolWorldEnv                        server.py    `agentrl serve env tool_world`
"""
