"""Session table for an environment server: one `Environment` per session, a cap, an idle timeout.

Each session has an asyncio lock, so concurrent steps on one session are serialised and a step never sees
a half-applied previous step. Blocking environments run in worker threads; a step that raises is rolled
back with the env's own snapshot/restore, so a bad step never corrupts a session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from environments.protocol.environment import EnvError, Environment
from environments.protocol.schemas import Action, Observation, ResetRequest, SessionState, StepResult

log = logging.getLogger(__name__)


class SessionError(Exception):
    """A session-level request error with its HTTP status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass
class Session:
    id: str
    env: Environment
    task_id: str | None = None
    created_at: float = field(default_factory=time.time)
    last_active: float = field(default_factory=time.monotonic)
    last_active_wall: float = field(default_factory=time.time)
    step_count: int = 0
    done: bool = False
    total_reward: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False

    def touch(self) -> None:
        self.last_active = time.monotonic()
        self.last_active_wall = time.time()


class SessionManager:
    """Creates, steps and expires sessions. All methods are coroutines on the server's event loop."""

    def __init__(
        self, env_factory: Callable[[], Environment], max_sessions: int, idle_timeout_s: float
    ) -> None:
        if max_sessions < 1:
            raise ValueError(f"max_sessions must be >= 1, got {max_sessions}")
        if idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {idle_timeout_s}")
        self.env_factory = env_factory
        self.max_sessions = max_sessions
        self.idle_timeout_s = idle_timeout_s
        self.sessions: dict[str, Session] = {}
        self._pending = 0  # sessions being created (counted against the cap)
        self._expired: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.blocking = False  # set by the server from the env class (or settings)
        self._bg: set[asyncio.Task] = set()
        self.stats = {"created": 0, "expired": 0, "closed": 0, "steps": 0}

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.blocking:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    async def create(self, req: ResetRequest) -> tuple[Session, Observation]:
        await self.reap()
        if len(self.sessions) + self._pending >= self.max_sessions:
            raise SessionError(
                429,
                f"too many sessions: {len(self.sessions)} open, max {self.max_sessions}; close some first",
            )
        self._pending += 1
        try:
            env = await self._run(self.env_factory)
            try:
                obs = await self._run(env.reset, task_id=req.task_id, task_spec=req.task_spec, seed=req.seed)
            except BaseException:
                await self._close_env(env)
                raise
        finally:
            self._pending -= 1
        sid = secrets.token_hex(12)
        session = Session(id=sid, env=env, task_id=obs.task_id or req.task_id)
        self.sessions[sid] = session
        self.stats["created"] += 1
        obs.session_id = sid
        return session, obs

    def get(self, sid: str) -> Session:
        session = self.sessions.get(sid)
        if session is None:
            if sid in self._expired:
                raise SessionError(404, f"session {sid!r} expired after {self.idle_timeout_s:g}s idle")
            raise SessionError(404, f"unknown session {sid!r}")
        if time.monotonic() - session.last_active > self.idle_timeout_s and not session.lock.locked():
            # Expired but not reaped yet: reap it now rather than at the reaper's next tick.
            with contextlib.suppress(RuntimeError):
                task = asyncio.get_running_loop().create_task(self._expire(sid, session))
                self._bg.add(task)  # keep a reference until it finishes (asyncio holds tasks weakly)
                task.add_done_callback(self._bg.discard)
            raise SessionError(404, f"session {sid!r} expired after {self.idle_timeout_s:g}s idle")
        return session

    async def _expire(self, sid: str, session: Session) -> None:
        if self.sessions.get(sid) is session:
            await self.close(sid, expired=True)

    async def step(self, sid: str, action: Action) -> StepResult:
        session = self.get(sid)
        async with session.lock:
            if session.closed:
                raise SessionError(404, f"session {sid!r} was closed")
            if session.done:
                raise SessionError(409, f"session {sid!r} is done; create a new session for a new episode")
            session.touch()
            snap = await self._run(session.env.snapshot)
            try:
                result = await self._run(session.env.step, action)
            except EnvError:
                raise
            except Exception:
                # Unexpected failure: put the world back as it was before this step, then report.
                log.exception("step failed in session %s; restoring snapshot", sid)
                await self._run(session.env.restore, snap)
                raise
            session.step_count += 1
            session.total_reward += result.reward
            session.done = result.done
            session.touch()
            self.stats["steps"] += 1
            return result

    async def state(self, sid: str) -> SessionState:
        session = self.get(sid)
        async with session.lock:
            session.touch()
            env_state = await self._run(session.env.state)
            return SessionState(
                session_id=sid,
                env=session.env.name,
                task_id=session.task_id,
                step_count=session.step_count,
                done=session.done,
                total_reward=session.total_reward,
                created_at=session.created_at,
                last_active_at=session.last_active_wall,
                state=env_state,
            )

    async def close(self, sid: str, *, expired: bool = False) -> None:
        session = self.sessions.pop(sid, None)
        if session is None:
            if sid in self._expired:
                return  # closing an expired session is fine (idempotent)
            raise SessionError(404, f"unknown session {sid!r}")
        session.closed = True
        if expired:
            self._expired[sid] = None
            while len(self._expired) > 10_000:
                self._expired.popitem(last=False)
            self.stats["expired"] += 1
        else:
            self.stats["closed"] += 1
        async with session.lock:
            await self._close_env(session.env)

    async def _close_env(self, env: Environment) -> None:
        try:
            await self._run(env.close)
        except Exception:
            log.exception("closing env %s failed", env.name)

    async def reap(self) -> int:
        """Close sessions idle for longer than the timeout. Returns how many were closed."""
        now = time.monotonic()
        stale = [
            s.id
            for s in self.sessions.values()
            if now - s.last_active > self.idle_timeout_s and not s.lock.locked()
        ]
        for sid in stale:
            await self.close(sid, expired=True)
        return len(stale)

    async def reaper_loop(self) -> None:
        interval = max(0.05, min(self.idle_timeout_s / 4, 10.0))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reap()
            except Exception:
                log.exception("session reaper failed")

    async def close_all(self) -> None:
        for sid in list(self.sessions):
            await self.close(sid)
