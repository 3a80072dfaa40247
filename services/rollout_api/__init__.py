"""The rollout API: a REST service that hands rollout jobs to workers and durably stores their trajectories.

Issue 6, item 3 (K2's RL infrastructure runs rollouts on many workers against one trajectory store). Torch-free:
it imports only fastapi, pydantic, sqlalchemy and httpx, so the service image stays small.

Modules: `settings` (configuration), `tables` (SQL schema and engine), `store` (lease/submit transactions),
`schemas` (wire models), `app` (FastAPI routes), `client` (the worker/trainer client). See docs/rollout_api.md.
"""
