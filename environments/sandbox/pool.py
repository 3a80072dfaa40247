"""Warm pool: jails started ahead of demand, each handed exactly one execution, then destroyed.

Why: a cold `Sandbox.run` of `python3 -c 'print(1)'` pays for a process chain (sh joining the memory cgroup,
setpriv, prlimit, bwrap creating namespaces and mounts) and an interpreter start with `site`, all before the
code runs; measured here that is nearly all of the latency. A warm jail is the very same chain, the same
uid-slot, rlimits, cgroup and bwrap flags, started in the background and parked in `warm.py`, which waits on
a pipe. An execution takes a ready jail, writes its request (argv, files) down the pipe, and is then read,
timed, capped and cleaned up exactly like a cold one (runner.py). A jail is never reused: after its one
execution it is killed and its uid swept like any cold jail, and the pool starts a new one.

What differs from a cold start, by design: the wall-clock limit starts when the request is handed over; the
interpreter's own start (~10 ms of CPU) counts against RLIMIT_CPU; for `python3 FLAGS -c/SCRIPT` requests
the code runs in the parked interpreter (started with those FLAGS), so modules the stub imported (os,
marshal) are already in sys.modules. Everything the jail can see or do is the same.

Flavours: the parked interpreter must have the request's interpreter flags (sys.flags cannot change after
start), so each jail has a flavour, the flags tuple it was started with (default mix: `-I`, as the code env
runs programs, and none). A taken jail is replaced by one of the same flavour; a request that has to wait
or run cold while other flavours sit idle retires the least recently wanted idle jail and restarts its
slot with its own flavour, so the pool follows the demand. Commands that are not such a Python invocation
(`sh -c ...`) take a jail of any flavour: the stub just execs them.

Threads: every warm jail is started by the pool's own long-lived thread, because `--die-with-parent`
(PR_SET_PDEATHSIG) fires when the *thread* that forked bwrap exits, not the process.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from environments.sandbox.jail import UidPool, sweep_uid

log = logging.getLogger(__name__)

Flavor = tuple[str, ...]
# Interpreter options without an argument whose effect is fixed at start-up: a parked interpreter started
# with them is indistinguishable (sys.flags included) from one started for the request.
WARMABLE_FLAGS = frozenset({"-I", "-S", "-s", "-E", "-B", "-u", "-O", "-OO", "-b", "-bb", "-q", "-P"})
DEFAULT_FLAVORS: tuple[Flavor, ...] = (("-I",), ())
READY_TIMEOUT_S = 30.0
WAIT_FOR_STARTING_S = 2.0  # a starting jail is always closer to ready than a cold start


def python_flavor(argv: list[str]) -> Flavor | None:
    """The interpreter flags of `python3 FLAGS -c CODE ...` / `python3 FLAGS SCRIPT ...`, else None."""
    if not argv or not os.path.basename(argv[0]).startswith("python"):
        return None
    flags: list[str] = []
    for i, arg in enumerate(argv[1:], 1):
        if arg in WARMABLE_FLAGS and arg not in flags:
            flags.append(arg)
            continue
        if arg == "-c" and len(argv) > i + 1:
            return tuple(flags)
        if not arg.startswith("-"):
            return tuple(flags)
        return None
    return None


@dataclass(eq=False)
class WarmJail:
    """One parked jail: its process (bwrap's outer pid, own process group), uid slot and pipes."""

    proc: subprocess.Popen
    uid: int
    flavor: Flavor
    ctl_w: int  # host -> stub: the request
    res_r: int  # stub -> host: b"R" when ready, then the returned-files JSON
    started: float = field(default_factory=time.monotonic)
    ready_at: float | None = None

    def close_fds(self) -> None:
        for fd in (self.ctl_w, self.res_r):
            with contextlib.suppress(OSError):
                os.close(fd)


@dataclass
class PoolStats:
    spawned: int = 0
    ready: int = 0
    taken: int = 0
    misses: int = 0  # requests that found no jail and ran cold
    waited: int = 0  # requests that waited for a starting jail
    failed: int = 0  # jails that died or never became ready
    retired: int = 0  # idle jails killed to make room for another flavour
    destroyed: int = 0  # jails killed and swept after their execution or at shutdown

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class WarmPool:
    """Keeps `size` jails started (ready or starting).

    `spawn(uid, flavor)` starts one jail; the pool holds it weakly (a WeakMethod of the Sandbox), so a
    Sandbox nobody uses any more can be collected, and its pool then closes itself. uids come from the
    Sandbox's UidPool; the pool never takes one when `UID_RESERVE` or fewer are free host-wide (other
    processes' pools included), so parked jails cannot starve real calls of slots.
    """

    UID_RESERVE = 8

    def __init__(
        self,
        size: int,
        spawn: Callable[[int, Flavor], WarmJail],
        uids: UidPool,
        flavors: tuple[Flavor, ...] = DEFAULT_FLAVORS,
    ) -> None:
        if size < 1:
            raise ValueError(f"pool size must be >= 1, got {size}")
        self.size = size
        self._spawn_ref = weakref.WeakMethod(spawn) if inspect.ismethod(spawn) else (lambda: spawn)
        self._uids = uids
        self.leftovers = 0  # processes still alive after a jail was destroyed (must stay 0)
        self.stats = PoolStats()
        self._cond = threading.Condition()
        self._ready: deque[WarmJail] = deque()
        self._starting: dict[int, WarmJail] = {}  # res_r fd -> jail
        self._retire: list[WarmJail] = []
        self._dead: list[WarmJail] = []
        self._want: deque[Flavor] = deque(flavors[i % len(flavors)] for i in range(size))
        self._demand: dict[Flavor, float] = {}  # flavour -> when a request last asked for it
        self._closing = False
        self._failures = 0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._loop, name="sandbox-warm-pool", daemon=True)
        self._thread.start()

    def destroy(self, jail: WarmJail) -> None:
        """Kill a jail (used or not), sweep every process of its uid, then free the uid."""
        try:
            kill_jail(jail)
            if self._uids.switch:
                n = sweep_uid(jail.uid)
                if n:
                    with self._cond:
                        self.leftovers += n
        finally:
            self._uids.release(jail.uid)
            with self._cond:
                self.stats.destroyed += 1

    def _try_uid(self) -> int | None:
        return self._uids.try_acquire(reserve=self.UID_RESERVE)

    # -- used by request threads ---------------------------------------------------------------------
    def take(self, flavor: Flavor | None) -> WarmJail | None:
        """A ready jail for this request (`flavor`: from `python_flavor`, None = any), or None: run cold.

        Waits (briefly) for a jail of the flavour that is still starting. When the request has to wait or
        run cold while jails of other flavours sit idle, the least recently wanted of those is retired and
        its slot restarted with this flavour. The caller owns the returned jail and must destroy it after
        its one execution."""
        deadline = time.monotonic() + WAIT_FOR_STARTING_S
        with self._cond:
            if flavor is not None:
                self._demand[flavor] = time.monotonic()
            waited = converted = False
            while not self._closing:
                jail = self._pick(flavor)
                if jail is not None:
                    self.stats.taken += 1
                    self.stats.waited += waited
                    self._want.append(jail.flavor)  # replace like for like
                    self._wake()
                    return jail
                if flavor is not None and not converted and self._ready:
                    converted = True
                    victim = min(self._ready, key=lambda j: (self._demand.get(j.flavor, 0.0), j.started))
                    self._ready.remove(victim)
                    self._retire.append(victim)
                    self._want.appendleft(flavor)  # the freed slot restarts with this flavour
                    self.stats.retired += 1
                    self._wake()
                starting = any(flavor is None or j.flavor == flavor for j in self._starting.values())
                left = deadline - time.monotonic()
                if not starting or left <= 0:
                    break
                waited = True
                self._cond.wait(left)
            self.stats.misses += 1
            return None

    def _pick(self, flavor: Flavor | None) -> WarmJail | None:
        if flavor is None:  # any jail will do: use the least wanted flavour
            candidates = sorted(self._ready, key=lambda j: self._demand.get(j.flavor, 0.0))
        else:
            candidates = [j for j in self._ready if j.flavor == flavor]
        for jail in candidates:
            self._ready.remove(jail)
            if jail.proc.poll() is None:
                return jail
            self._dead.append(jail)  # died while parked (killed from outside, OOM): never used
            self.stats.failed += 1
            self._want.append(jail.flavor)
            self._wake()
        return None

    @property
    def ready_count(self) -> int:
        with self._cond:
            return len(self._ready)

    @property
    def starting_count(self) -> int:
        with self._cond:
            return len(self._starting)

    def idle_jails(self) -> list[WarmJail]:
        """Every jail the pool holds that no request has touched: ready, starting, or being retired."""
        with self._cond:
            return list(self._ready) + list(self._starting.values()) + self._retire + self._dead

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until the pool is full of ready jails (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._ready) < self.size and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return len(self._ready) >= self.size

    def close(self) -> None:
        """Kill every parked jail, sweep their uids and stop the thread. Idempotent."""
        with self._cond:
            if self._closing:
                thread_alive = self._thread.is_alive()
            else:
                self._closing = True
                thread_alive = True
                self._wake()
                self._cond.notify_all()
        if thread_alive and threading.current_thread() is not self._thread:
            self._thread.join(timeout=60)

    # -- the pool's thread ---------------------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while True:
                with self._cond:
                    if self._closing:
                        break
                    doomed = self._retire + self._dead
                for jail in doomed:  # never used: retired for another flavour, or died while parked
                    self.destroy(jail)
                with self._cond:
                    self._retire = [j for j in self._retire if j not in doomed]
                    self._dead = [j for j in self._dead if j not in doomed]
                self._fill(sel)
                timeout = 1.0
                with self._cond:
                    if self._starting:
                        oldest = min(j.started for j in self._starting.values())
                        timeout = max(0.0, min(timeout, oldest + READY_TIMEOUT_S - time.monotonic()))
                for key, _ in sel.select(timeout):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                        continue
                    self._on_ready_pipe(sel, key.data)
                self._expire_slow_starters(sel)
        except Exception:  # never let the pool thread die silently: run cold from now on
            log.exception("sandbox warm pool failed; executions run cold from now on")
        finally:
            with self._cond:
                self._closing = True
                jails = list(self._ready) + list(self._starting.values()) + self._retire + self._dead
                self._ready.clear()
                self._starting.clear()
                self._retire, self._dead = [], []
                self._cond.notify_all()
            for jail in jails:
                with contextlib.suppress(Exception):
                    self.destroy(jail)
            sel.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _fill(self, sel: selectors.BaseSelector) -> None:
        while True:
            with self._cond:
                if self._closing or len(self._ready) + len(self._starting) >= self.size:
                    return
                if self._failures >= 5:
                    return  # something is wrong with the jail itself; stop burning CPU (cold still works)
                flavor = self._want.popleft() if self._want else DEFAULT_FLAVORS[0]
            uid = self._try_uid()
            if uid is None:
                with self._cond:
                    self._want.appendleft(flavor)
                return  # every uid slot is busy; retry on the next wake-up
            spawn = self._spawn_ref()
            if spawn is None:  # the Sandbox is gone: nobody will take a jail again
                self._uids.release(uid)
                with self._cond:
                    self._closing = True
                return
            try:
                jail = spawn(uid, flavor)
            except Exception as exc:
                log.warning("cannot start a warm sandbox jail: %s", exc)
                self._uids.release(uid, clean=False)  # not swept: its next holder sweeps it first
                with self._cond:
                    self._want.appendleft(flavor)
                    self._failures += 1
                    self.stats.failed += 1
                return
            finally:
                del spawn
            with self._cond:
                self._starting[jail.res_r] = jail
                self.stats.spawned += 1
            sel.register(jail.res_r, selectors.EVENT_READ, jail)

    def _on_ready_pipe(self, sel: selectors.BaseSelector, jail: WarmJail) -> None:
        sel.unregister(jail.res_r)
        try:
            byte = os.read(jail.res_r, 1)
        except OSError:
            byte = b""
        with self._cond:
            self._starting.pop(jail.res_r, None)
            if byte == b"R" and jail.proc.poll() is None and not self._closing:
                jail.ready_at = time.monotonic()
                self._ready.append(jail)
                self.stats.ready += 1
                self._failures = 0
                self._cond.notify_all()
                return
            self._failures += 1
            self.stats.failed += 1
            self._want.append(jail.flavor)
            self._cond.notify_all()
        err = b""
        if jail.proc.stderr is not None and jail.proc.poll() is not None:
            with contextlib.suppress(Exception):
                err = jail.proc.stderr.read(2000)
        log.warning("a warm sandbox jail failed to start (%s)", err.decode(errors="replace").strip()[-300:])
        self.destroy(jail)

    def _expire_slow_starters(self, sel: selectors.BaseSelector) -> None:
        now = time.monotonic()
        with self._cond:
            slow = [j for j in self._starting.values() if now - j.started > READY_TIMEOUT_S]
            for jail in slow:
                del self._starting[jail.res_r]
                self._failures += 1
                self.stats.failed += 1
                self._want.append(jail.flavor)
        for jail in slow:
            sel.unregister(jail.res_r)
            log.warning("a warm sandbox jail was not ready after %gs; killed", READY_TIMEOUT_S)
            self.destroy(jail)


def kill_jail(jail: WarmJail) -> None:
    """SIGKILL the jail's process group (bwrap + --die-with-parent take everything inside) and reap it.
    Only while bwrap is unreaped: after that its pid (= the group id) may belong to someone else."""
    if jail.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(jail.proc.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        jail.proc.wait(timeout=10)
    for f in (jail.proc.stdin, jail.proc.stdout, jail.proc.stderr):
        if f is not None and not f.closed:
            with contextlib.suppress(OSError):
                f.close()
    jail.close_fds()
