"""`Sandbox.run`: one command in a fresh jail, with a wall-clock kill, output caps and no leftovers.

Blocking by design (called from worker threads). Output is read with a selector so a flood or a hang is
detected while it happens; on timeout or flood the whole process group is SIGKILLed, which (through
--die-with-parent and the pid namespace) takes every process in the jail with it, daemons included. A
final sweep kills anything still running under the slot's uid before the uid is reused.

Warm pool (pool.py, on by default in bwrap mode): jails are started ahead of demand and parked in
`warm.py`; a call takes one, hands its request over a pipe and is then read, limited and cleaned up exactly
like a cold call. Each jail serves one call and is destroyed after it. Configure with `pool_size=` (0 = off)
or $AGENTRL_SANDBOX_POOL (`0`/`off` disables, `N` sets the size; default 8). Calls whose limits need a
different jail (rlimits, tmpfs size, memory cgroup) than the pool's run cold.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import marshal
import os
import selectors
import signal
import subprocess
import threading
import time
import weakref
from importlib import resources
from typing import Literal

from environments.sandbox.cgroup import MemoryCgroups, join_prefix
from environments.sandbox.jail import (
    LockDirUnsafe,
    UidPool,
    become_subreaper,
    bwrap_argv,
    drop_privileges_prefix,
    find_tools,
    rlimit_prefix,
    sweep_uid,
)
from environments.sandbox.limits import ExecResult, SandboxLimits
from environments.sandbox.pool import Flavor, WarmJail, WarmPool, python_flavor

log = logging.getLogger(__name__)

Mode = Literal["bwrap", "unsafe"]
COLLECTOR_PATH = "/.sandbox/collect.py"
WARM_PATH = "/.sandbox/warm.py"
POOL_ENV = "AGENTRL_SANDBOX_POOL"
DEFAULT_POOL_SIZE = 8
_POOLS: weakref.WeakSet[WarmPool] = weakref.WeakSet()
_SIGNALS = {s.value: s.name for s in signal.Signals}
_SIGNAL_HINTS = {
    signal.SIGKILL: " (a hard limit: CPU time or memory)",
    signal.SIGXCPU: " (CPU time limit)",
    signal.SIGXFSZ: " (file size limit)",
}


class SandboxUnavailable(RuntimeError):
    """Isolation is not available here and unsafe mode was not requested."""


class _WarmJailLost(Exception):
    """The parked jail died before it took the request: no user code ran, so the call runs cold."""


def pool_size_from_env(default: int = DEFAULT_POOL_SIZE) -> int:
    """$AGENTRL_SANDBOX_POOL: unset -> `default`; `0`, `off`, `false`, `no` -> 0; an integer -> that size."""
    raw = os.environ.get(POOL_ENV, "").strip().lower()
    if not raw:
        return default
    if raw in ("off", "false", "no"):
        return 0
    try:
        return max(0, int(raw))
    except ValueError:
        raise ValueError(f"{POOL_ENV}={raw!r}: use a pool size (0 disables the pool) or 'off'") from None


def _jail_key(limits: SandboxLimits) -> tuple[int, ...]:
    """The limits baked into a jail when it starts; the rest (wall clock, output caps) apply per call."""
    return (limits.cpu_s, limits.memory_mb, limits.nproc, limits.fsize_mb, limits.nofile, limits.tmpfs_mb)


def parked_jails() -> list[WarmJail]:
    """Every never-used jail that a warm pool of this process holds (tests tell them from leftovers)."""
    return [jail for pool in list(_POOLS) for jail in pool.idle_jails()]


@atexit.register
def _close_pools() -> None:
    for pool in list(_POOLS):
        with contextlib.suppress(Exception):
            pool.close()


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _check_name(name: str) -> str:
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in name:
        raise ValueError(f"bad file name {name!r}: use a relative path inside /work without '.' or '..'")
    return name


class Sandbox:
    """Runs commands in bubblewrap jails (mode "bwrap"), or bare with rlimits only (mode "unsafe")."""

    def __init__(
        self,
        mode: Mode = "bwrap",
        limits: SandboxLimits | None = None,
        slots: int = 64,
        pool_size: int | None = None,
    ) -> None:
        """`pool_size`: warm jails kept ready (bwrap mode only); None reads $AGENTRL_SANDBOX_POOL (default
        8), 0 disables the pool. It is capped at half the uid slots, which parked jails hold."""
        tools = find_tools()
        if tools["prlimit"] is None or tools["setpriv"] is None:
            raise SandboxUnavailable("prlimit and setpriv (util-linux) are not installed")
        if mode == "bwrap" and tools["bwrap"] is None:
            raise SandboxUnavailable("bwrap (bubblewrap) is not installed")
        self.mode: Mode = mode
        self.limits = limits or SandboxLimits()
        self.tools = tools
        try:
            self.pool = UidPool(size=slots)
        except LockDirUnsafe as exc:  # fail closed: without host-wide locks another process could sweep us
            raise SandboxUnavailable(str(exc)) from exc
        self.subreaper = become_subreaper() if mode == "bwrap" else False
        self.cgroups = MemoryCgroups() if self.pool.switch else None
        self._leftovers = 0
        self._leftover_lock = threading.Lock()
        pkg = resources.files("environments.sandbox")
        self._collector = pkg.joinpath("collect.py").read_bytes()
        self._warm_stub = pkg.joinpath("warm.py").read_bytes()
        size = pool_size_from_env() if pool_size is None else pool_size
        if size < 0:
            raise ValueError(f"pool_size must be >= 0, got {size}")
        if size > slots // 2:
            if pool_size is not None:
                log.warning(
                    "sandbox pool_size %d capped at %d (half of %d uid slots)", size, slots // 2, slots
                )
            size = slots // 2
        self.warm: WarmPool | None = None
        self._warm_key = _jail_key(self.limits)
        if mode == "bwrap" and size > 0:
            self.warm = WarmPool(size, self._spawn_warm, self.pool)
            _POOLS.add(self.warm)
            weakref.finalize(self, self.warm.close)  # an unused Sandbox takes its parked jails with it

    @property
    def leftovers(self) -> int:
        """Live processes found after a call (cold or warm) was cleaned up: must stay 0 (tests check it)."""
        return self._leftovers + (self.warm.leftovers if self.warm is not None else 0)

    def close(self) -> None:
        """Stop the warm pool: every parked jail is killed and its uid swept. Cold calls still work."""
        if self.warm is not None:
            self.warm.close()

    def disable_pool(self) -> None:
        """Close the warm pool and run every later call cold."""
        pool, self.warm = self.warm, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        argv: list[str],
        *,
        stdin: str | bytes = b"",
        files: dict[str, str | bytes] | None = None,
        return_files: list[str] | None = None,
        limits: SandboxLimits | None = None,
        warm: bool = True,
    ) -> ExecResult:
        """Run `argv` (inside the jail, cwd /work) with `files` written to /work first.

        `warm=False` starts a jail for this call even when a parked one is ready (the startup probe checks
        both paths)."""
        if not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
            raise ValueError("argv must be a non-empty list of strings without NUL bytes")
        limits = limits or self.limits
        files = {_check_name(k): v for k, v in (files or {}).items()}
        return_files = [_check_name(n) for n in (return_files or [])]
        stdin_b = stdin.encode() if isinstance(stdin, str) else stdin
        if warm and self.warm is not None and _jail_key(limits) == self._warm_key:
            jail = self.warm.take(python_flavor(argv))
            if jail is not None:
                try:
                    return self._run_warm(jail, argv, stdin_b, files, return_files, limits)
                except _WarmJailLost:
                    log.warning("a warm sandbox jail died before taking its request; running cold")
                finally:
                    self.warm.destroy(jail)
        with self.pool.acquire(timeout=limits.wall_timeout_s + 30) as uid:
            try:
                return self._run(argv, stdin_b, files, return_files, limits, uid)
            finally:
                if self.pool.switch:
                    self._add_leftovers(sweep_uid(uid))

    def _add_leftovers(self, n: int) -> None:
        if n:
            with self._leftover_lock:
                self._leftovers += n

    # -- warm pool ---------------------------------------------------------------------------------------
    def _spawn_warm(self, uid: int, flavor: Flavor) -> WarmJail:
        """Start one parked jail for `uid` (runs on the pool's thread): the cold path's chain and flags,
        with warm.py (and the collector) bound in, waiting for a request on a pipe."""
        limits = self.limits
        stub_fd = _memfd("warm", self._warm_stub)
        coll_fd = _memfd("collect", self._collector)
        ctl_r, ctl_w = os.pipe()
        res_r, res_w = os.pipe()
        try:
            full = rlimit_prefix(self.tools["prlimit"], limits)
            full += bwrap_argv(
                self.tools["bwrap"],
                limits,
                data_fds=[(stub_fd, WARM_PATH), (coll_fd, COLLECTOR_PATH)],
            )
            full += ["python3", *flavor, WARM_PATH, str(ctl_r), str(res_w)]
            proc = self._popen(full, uid, limits, [stub_fd, coll_fd, ctl_r, res_w], cwd="/")
        except BaseException:
            for fd in (ctl_w, res_r):
                os.close(fd)
            raise
        finally:
            for fd in (stub_fd, coll_fd, ctl_r, res_w):
                os.close(fd)
        return WarmJail(proc=proc, uid=uid, flavor=flavor, ctl_w=ctl_w, res_r=res_r)

    def _run_warm(
        self,
        jail: WarmJail,
        argv: list[str],
        stdin: bytes,
        files: dict[str, str | bytes],
        return_files: list[str],
        limits: SandboxLimits,
    ) -> ExecResult:
        dirs = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
        request = marshal.dumps(
            {
                "argv": list(argv),
                "files": [(n, c.encode() if isinstance(c, str) else bytes(c)) for n, c in files.items()],
                "dirs": dirs,
                "return_files": list(return_files),
                "max_file_bytes": limits.max_file_bytes,
            }
        )
        ctl = len(request).to_bytes(8, "little") + request
        result_r = jail.res_r if return_files else None
        start = time.monotonic()
        return self._communicate(jail.proc, stdin, limits, result_r, start, ctl_fd=jail.ctl_w, ctl=ctl)

    def _run(
        self,
        argv: list[str],
        stdin: bytes,
        files: dict[str, str | bytes],
        return_files: list[str],
        limits: SandboxLimits,
        uid: int,
    ) -> ExecResult:
        fds: list[int] = []
        result_r = result_w = None
        try:
            input_fds = []
            for name, content in files.items():
                fd = _memfd("in", content.encode() if isinstance(content, str) else content)
                fds.append(fd)
                input_fds.append((fd, f"/work/{name}"))
            dirs = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
            data_fds = []
            pass_fds = list(fds)
            cmd = list(argv)
            if return_files:
                cfd = _memfd("collect", self._collector)
                fds.append(cfd)
                pass_fds.append(cfd)
                data_fds.append((cfd, COLLECTOR_PATH))
                result_r, result_w = os.pipe()
                pass_fds.append(result_w)
                cmd = ["python3", "-I", "-S", COLLECTOR_PATH, str(result_w), str(limits.max_file_bytes)]
                cmd += [json.dumps(return_files), "--", *argv]
            if self.mode == "bwrap":
                full = rlimit_prefix(self.tools["prlimit"], limits)
                full += bwrap_argv(
                    self.tools["bwrap"], limits, input_fds=input_fds, data_fds=data_fds, dirs=dirs
                )
                full += cmd
                return self._spawn(full, stdin, limits, uid, pass_fds, result_r, result_w, cwd="/")
            return self._run_unsafe(cmd, stdin, files, limits, uid, pass_fds, result_r, result_w)
        finally:
            for fd in fds:
                os.close(fd)
            for fd in (result_r, result_w):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _run_unsafe(self, cmd, stdin, files, limits, uid, pass_fds, result_r, result_w) -> ExecResult:
        import tempfile

        log.critical("SANDBOX UNSAFE MODE: running untrusted code WITHOUT isolation (rlimits only)")
        with tempfile.TemporaryDirectory(prefix="agentrl-unsafe-") as work:
            for name, content in files.items():
                path = os.path.join(work, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(content.encode() if isinstance(content, str) else content)
            os.chmod(work, 0o777)
            full = rlimit_prefix(self.tools["prlimit"], limits) + cmd
            return self._spawn(full, stdin, limits, uid, pass_fds, result_r, result_w, cwd=work)

    def _popen(self, full: list[str], uid: int, limits: SandboxLimits, pass_fds: list[int], cwd: str):
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        if self.pool.switch:
            full = drop_privileges_prefix(self.tools["setpriv"], uid) + full
            procs = self.cgroups.prepare(uid, limits.memory_mb) if self.cgroups else None
            if procs:
                full = join_prefix(procs) + full
        return subprocess.Popen(
            full,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            process_group=0,
            env=env,
            cwd=cwd,
        )

    def _spawn(self, full, stdin, limits, uid, pass_fds, result_r, result_w, cwd) -> ExecResult:
        start = time.monotonic()
        try:
            proc = self._popen(full, uid, limits, pass_fds, cwd)
        except OSError as exc:
            return ExecResult(status="sandbox_error", message=f"cannot start the sandbox: {exc}")
        if result_w is not None:
            os.close(result_w)
        return self._communicate(proc, stdin, limits, result_r, start)

    def _communicate(
        self,
        proc: subprocess.Popen,
        stdin: bytes,
        limits: SandboxLimits,
        result_r: int | None,
        start: float,
        ctl_fd: int | None = None,
        ctl: bytes = b"",
    ) -> ExecResult:
        """Feed stdin (and a warm jail's request), read output with caps and the wall clock, then wait.
        `start`: when the call began (cold: before the jail started; warm: when the request is handed over)."""
        out, err, res = bytearray(), bytearray(), bytearray()
        status, truncated, message = None, False, ""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        if result_r is not None:
            sel.register(result_r, selectors.EVENT_READ, res)
        pending = {}  # writable fd -> bytes still to write
        if stdin:
            pending[proc.stdin.fileno()] = memoryview(stdin)
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, None)
        else:
            proc.stdin.close()
        if ctl_fd is not None:
            pending[ctl_fd] = memoryview(ctl)
            os.set_blocking(ctl_fd, False)
            sel.register(ctl_fd, selectors.EVENT_WRITE, None)
        deadline = start + limits.wall_timeout_s
        cap = limits.max_output_bytes
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                status = "timeout"
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                if key.data is None:  # stdin or the request pipe is writable
                    data = pending[key.fd]
                    try:
                        data = data[os.write(key.fd, data[:65536]) :]
                    except OSError:
                        if key.fd == ctl_fd:  # the stub never read its whole request: no code ran
                            sel.close()
                            raise _WarmJailLost() from None
                        data = data[:0]
                    pending[key.fd] = data
                    if not data:
                        sel.unregister(key.fileobj)
                        if key.fd != ctl_fd:  # (the request pipe is closed with the jail)
                            proc.stdin.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = key.data
                room = (cap if buf is not res else 64 * cap) - len(buf)
                buf += chunk[: max(room, 0)]
                if len(chunk) > room:
                    status, truncated = "output_limit", True
            if status:
                break
        if status is not None:
            _kill_group(proc)
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()) + 1)
        except subprocess.TimeoutExpired:
            status = status or "timeout"
            _kill_group(proc)
            proc.wait()
        sel.close()
        for f in (proc.stdout, proc.stderr, proc.stdin):
            if f and not f.closed:
                f.close()
        rc = proc.returncode
        sig = -rc if rc < 0 else None
        if self.mode == "bwrap" and rc > 128 and rc - 128 in _SIGNALS:
            sig, rc = rc - 128, -(rc - 128)  # bwrap reports a signal death of the command as 128+N
        if status is None:
            status = "ok" if rc == 0 else ("killed" if sig else "error")
            if sig:
                message = f"killed by {_SIGNALS[sig]}" + _SIGNAL_HINTS.get(sig, "")
        files, file_errors = {}, {}
        if res:
            try:
                parsed = json.loads(bytes(res))
                files, file_errors = dict(parsed.get("files", {})), dict(parsed.get("errors", {}))
            except (ValueError, AttributeError):
                file_errors = {"*": "the jail returned unreadable file data"}
        message = {
            "timeout": f"killed after the {limits.wall_timeout_s:g}s wall-clock limit",
            "output_limit": f"killed: output over the {cap}-byte cap",
        }.get(status, message)
        return ExecResult(
            status=status,
            exit_code=rc if rc >= 0 else None,
            signal=sig,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            duration_ms=(time.monotonic() - start) * 1000,
            truncated=truncated,
            files=files,
            file_errors=file_errors,
            message=message,
        )


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
