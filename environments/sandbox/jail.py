"""The bubblewrap command line for one jailed call, and the pool of unprivileged uids.

Layers (sandbox.md §0, §2): the server drops to a per-slot unprivileged uid *before* bwrap (as real root,
the jailed process would keep root's file access and be exempt from RLIMIT_NPROC); `prlimit` applies the
rlimits; bwrap unshares every namespace (no network: only `lo` inside), forbids nested user namespaces,
mounts a read-only /usr, a fresh /proc and /dev, and size-capped private tmpfs for /work and /tmp; the
environment is cleared; `--die-with-parent` + the pid namespace mean killing bwrap kills everything inside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator

from environments.sandbox.limits import SandboxLimits

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
_MB = 1 << 20


def find_tools() -> dict[str, str | None]:
    return {name: shutil.which(name) for name in ("bwrap", "prlimit", "setpriv")}


def drop_privileges_prefix(setpriv: str, uid: int) -> list[str]:
    # A binary rather than Popen(user=...): Python can then start the child with vfork instead of
    # copying the whole (large) server process, which matters at ~50 jails/s.
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def rlimit_prefix(prlimit: str, limits: SandboxLimits) -> list[str]:
    return [
        prlimit,
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * _MB}",
        f"--nproc={limits.nproc}",
        f"--fsize={limits.fsize_mb * _MB}",
        f"--nofile={limits.nofile}",
        "--core=0",
        "--",
    ]


def bwrap_argv(
    bwrap: str,
    limits: SandboxLimits,
    *,
    input_fds: list[tuple[int, str]] = (),  # type: ignore[assignment]
    data_fds: list[tuple[int, str]] = (),  # type: ignore[assignment]
    dirs: list[str] = (),  # type: ignore[assignment]
) -> list[str]:
    """bwrap options up to and including `--`; append the command after it."""
    tmpfs = str(limits.tmpfs_mb * _MB)
    argv = [
        bwrap,
        "--unshare-all",  # user, ipc, pid, net, uts, cgroup
        "--unshare-user",
        "--disable-userns",  # no nested user namespaces (no new privileges inside)
        "--die-with-parent",
        "--new-session",  # no TIOCSTI into a controlling terminal
        "--clearenv",
        "--setenv", "PATH", SANDBOX_PATH,
        "--setenv", "HOME", "/work",
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/sbin", "/sbin",
        "--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache",
        "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
        "--proc", "/proc",
        "--dev", "/dev",
        "--size", tmpfs, "--tmpfs", "/tmp",
        "--size", tmpfs, "--tmpfs", "/work",
        "--size", tmpfs, "--tmpfs", "/dev/shm",
    ]  # fmt: skip
    for d in dirs:
        argv += ["--dir", f"/work/{d}"]
    for fd, dest in input_fds:
        argv += ["--perms", "0644", "--file", str(fd), dest]
    for fd, dest in data_fds:
        argv += ["--ro-bind-data", str(fd), dest]
    # The jail's root and /dev are tmpfs without a size cap: make them read-only so they cannot be filled
    # (device nodes still work; /dev/shm is its own capped tmpfs).
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/work", "--"]
    return argv


UID_RANGE = 64  # uids per base, shared by every UidPool of this process
_shared_lock = threading.Lock()
_shared: dict[int, tuple[deque[int], threading.Condition]] = {}


class UidPool:
    """Hands out distinct unprivileged uids, one per concurrent call.

    RLIMIT_NPROC counts processes per *real uid* system-wide, so concurrent jails sharing a uid would share
    one fork budget; distinct uids also mean one call can never signal or ptrace another's processes.
    The uids of a base are shared by every UidPool (every Sandbox) in this process, so two sandboxes never
    hold the same uid at once: the sweep after one's call would otherwise kill the other's jail (the warm
    pool parks jails under uids for a long time). `size` caps this pool's own share.
    When the server is not root it cannot switch uid: every call then runs as the server's own uid.
    """

    def __init__(self, base: int = 61000, size: int = 64) -> None:
        self.switch = os.geteuid() == 0
        self.size = max(size, 1)
        self._held = 0
        if self.switch:
            with _shared_lock:
                if base not in _shared:
                    # FIFO: a uid rests as long as possible before reuse.
                    _shared[base] = (deque(range(base, base + max(UID_RANGE, size))), threading.Condition())
                self._free, self._cond = _shared[base]
        else:
            self._free = deque([os.geteuid()] * self.size)
            self._cond = threading.Condition()

    def _available(self) -> bool:
        return self._held < self.size and bool(self._free)

    @contextlib.contextmanager
    def acquire(self, timeout: float) -> Iterator[int]:
        with self._cond:
            if not self._cond.wait_for(self._available, timeout=timeout):
                raise TimeoutError(f"no free sandbox slot within {timeout:g}s ({self.size} concurrent max)")
            uid = self._free.popleft()
            self._held += 1
        try:
            yield uid
        finally:
            self.release(uid)

    def try_acquire(self, reserve: int = 0) -> int | None:
        """A free uid now, or None (the warm pool never waits for one), leaving at least `reserve` uids of the
        shared range free for real calls. Give it back with `release`."""
        with self._cond:
            if not self._available() or (self.switch and len(self._free) <= reserve):
                return None
            self._held += 1
            return self._free.popleft()

    def release(self, uid: int) -> None:
        """Return a uid; only after every process of it was swept (`sweep_uid`)."""
        with self._cond:
            self._free.append(uid)
            self._held -= 1
            self._cond.notify_all()

    @property
    def held(self) -> int:
        """uids this pool holds now (running calls and parked warm jails)."""
        with self._cond:
            return self._held


def become_subreaper() -> bool:
    """Adopt orphaned descendants (PR_SET_CHILD_SUBREAPER) so we can reap them ourselves.

    bwrap's outer process can exit a moment before the jail's pid-1 does; the orphan is reparented to the
    host's pid 1, which may never reap it (containers without an init, VM agents). Its zombie would count
    against the slot uid's RLIMIT_NPROC forever. As a subreaper we reap it in `sweep_uid`.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _sweep_once(uid: int, me: int) -> tuple[int, int]:
    """One pass: SIGKILL every process of `uid`, reap those that are our children.
    Returns (processes still pending: alive or our unreaped children, alive processes)."""
    pending = escaped = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            state, ppid = fields[0], int(fields[1])
            zombie = state in (b"Z", b"X")
            if not zombie:
                escaped += 1
            if not zombie or ppid == me:
                pending += 1
            os.kill(pid, 9)
            if ppid == me:
                os.waitpid(pid, os.WNOHANG)
        except (FileNotFoundError, ProcessLookupError, PermissionError, ChildProcessError, IndexError):
            continue
    return pending, escaped


def sweep_uid(uid: int, settle_s: float = 2.0) -> int:
    """Kill and reap every process of `uid` before the uid is reused. Processes of a jail whose pid
    namespace is being torn down are still visible for a moment; wait for them (at most `settle_s`).
    Returns how many were still alive after that (a containment failure; must be 0)."""
    if uid == 0 or uid == os.geteuid():
        return 0  # never sweep root's or our own processes
    me = os.getpid()
    deadline = time.monotonic() + settle_s
    pending, alive = _sweep_once(uid, me)
    pause = 0.0005  # a dying jail is usually gone within a millisecond: start short, back off to 4 ms
    while pending and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.004)
        pending, alive = _sweep_once(uid, me)
    return alive
