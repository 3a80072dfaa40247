"""The bubblewrap command line for one jailed call, and the host-wide pool of unprivileged uids.

Layers (sandbox.md §0, §2): the server drops to a per-slot unprivileged uid *before* bwrap (as real root,
the jailed process would keep root's file access and be exempt from RLIMIT_NPROC); `prlimit` applies the
rlimits; bwrap unshares every namespace (no network: only `lo` inside), forbids nested user namespaces,
mounts a read-only /usr, a fresh /proc and /dev, and size-capped private tmpfs for /work and /tmp; the
environment is cleared; `--die-with-parent` + the pid namespace mean killing bwrap kills everything inside.

uid slots are exclusive on the whole host (per-uid `flock`s, `UidPool`): the sweep after a call kills every
process of its uid, so a uid shared with another process would take that process's jails with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import threading
import time
from collections import deque
from collections.abc import Iterator

from environments.sandbox.limits import SandboxLimits

log = logging.getLogger(__name__)

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


UID_RANGE = 64  # uids per base
LOCK_DIR_ENV = "AGENTRL_SANDBOX_LOCK_DIR"
DEFAULT_LOCK_DIR = "/run/agentrl-sandbox"
LOCK_POLL_S = 0.05  # how often a call retries while other processes hold every free uid
_CLEAN, _DIRTY = b"0", b"1"  # byte 0 of a lock file: did the last holder sweep the uid before letting go?


class SlotsExhausted(TimeoutError):
    """No uid slot became free within the timeout (in this process or, through the locks, on this host)."""


class LockDirUnsafe(RuntimeError):
    """The uid lock directory cannot be created or could be tampered with by a non-root user."""


def lock_dir_path() -> str:
    """Where the per-uid lock files live: $AGENTRL_SANDBOX_LOCK_DIR, else /run/agentrl-sandbox."""
    return os.environ.get(LOCK_DIR_ENV, "").strip() or DEFAULT_LOCK_DIR


def prepare_lock_dir(path: str) -> str:
    """Create the lock directory (mode 0700) and check that only root can change it or what leads to it.

    A lock file a non-root user could create, replace or keep open would let that user hold uids forever
    or trick two servers into sharing one; so the directory and every parent must be root-owned and not
    writable by group or others (a sticky parent such as /tmp is not enough: anyone may pre-create the
    directory there). Returns the real path."""
    if not os.path.isabs(path):
        raise LockDirUnsafe(f"sandbox uid lock directory {path!r} must be an absolute path ({LOCK_DIR_ENV})")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise LockDirUnsafe(f"cannot create the sandbox uid lock directory {path}: {exc}") from exc
    real = os.path.realpath(path)
    me = os.geteuid()
    node = real
    while True:
        st = os.lstat(node)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, me) or st.st_mode & 0o022:
            raise LockDirUnsafe(
                f"sandbox uid lock directory {real}: {node} must be a directory owned by root and not "
                f"writable by group or others (mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid}); "
                f"set {LOCK_DIR_ENV} to a root-only directory"
            )
        if node == "/":
            return real
        node = os.path.dirname(node)


def _try_lock(directory: str, uid: int) -> int | None:
    """An fd holding the exclusive lock of `uid`, or None when another open file (any process) holds it."""
    fd = os.open(
        os.path.join(directory, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _unlock(fd: int, clean: bool) -> None:
    with contextlib.suppress(OSError):
        if clean:
            os.pwrite(fd, _CLEAN, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


class _Range:
    """This process's view of one uid range: free uids (FIFO: a uid rests as long as possible before
    reuse), a condition to wait on, and the lock fd of every uid the process holds."""

    def __init__(self, uids: range, directory: str | None) -> None:
        self.uids = uids
        self.directory = directory
        self.free: deque[int] = deque(uids)
        self.cond = threading.Condition()
        self.fds: dict[int, int] = {}


_shared_lock = threading.Lock()
_shared: dict[tuple[int, int], _Range] = {}


def _forget_locks_in_child() -> None:
    """After os.fork: the child shares the parent's locked open files. Close them (never LOCK_UN, which
    would unlock the parent's slot) so a child that outlives its parent cannot keep the parent's uids."""
    for r in list(_shared.values()):
        for fd in list(r.fds.values()):
            with contextlib.suppress(OSError):
                os.close(fd)
        r.fds = {}


os.register_at_fork(after_in_child=_forget_locks_in_child)


class UidPool:
    """Hands out distinct unprivileged uids, one per concurrent call, host-wide.

    RLIMIT_NPROC counts processes per *real uid* system-wide, so concurrent jails sharing a uid would share
    one fork budget; distinct uids also mean one call can never signal or ptrace another's processes. And
    the sweep after a call kills every process of its uid: a second holder's jail (running, or parked by
    the warm pool for a long time) would die with it. So a uid is held by one holder on the whole host:

    - in this process, every UidPool (every Sandbox) of a range shares one free list;
    - across processes (a code server and a reward stack, two pytest workers), each held uid also holds an
      exclusive `flock` on `<lock dir>/<uid>.lock` (`prepare_lock_dir`), taken non-blocking and kept until
      the uid is released after its sweep. The kernel drops it when the holder dies, SIGKILL included. A
      holder that dies leaves the file marked dirty; the next holder sweeps the uid before using it.

    `size` caps this pool's own share. A call waits up to its timeout for a slot (polling every
    `LOCK_POLL_S` while other processes hold every free one), then raises `SlotsExhausted` naming the range.
    When the server is not root it cannot switch uid: every call then runs as the server's own uid, and
    nothing is locked.
    """

    def __init__(self, base: int = 61000, size: int = 64, span: int = UID_RANGE) -> None:
        self.switch = os.geteuid() == 0
        self.size = max(size, 1)
        self._held = 0
        if self.switch:
            uids = range(base, base + max(span, size))
            directory = prepare_lock_dir(lock_dir_path())
            with _shared_lock:
                key = (uids.start, uids.stop)
                if key not in _shared:
                    _shared[key] = _Range(uids, directory)
                self._range = _shared[key]
        else:
            self._range = _Range(range(0), None)
            self._range.free = deque([os.geteuid()] * self.size)
        self._free, self._cond = self._range.free, self._range.cond

    @property
    def uids(self) -> range:
        """The uid range this pool draws from (empty when not switching uids)."""
        return self._range.uids

    @property
    def lock_dir(self) -> str | None:
        return self._range.directory

    def _describe(self) -> str:
        r = self._range.uids
        return f"uids {r.start}-{r.stop - 1}" if r else f"uid {os.geteuid()} (not root: no uid switch)"

    def _lock_some(self, n: int) -> list[tuple[int, int]]:
        """Lock up to `n` uids of the free list (caller holds the condition), in FIFO order; uids locked by
        other processes go to the back. Returns (uid, fd) pairs, still in the free list."""
        r = self._range
        if r.directory is None:
            return [(uid, -1) for uid in list(self._free)[:n]]
        got: list[tuple[int, int]] = []
        busy: list[int] = []
        for uid in list(self._free):
            if len(got) >= n:
                break
            fd = _try_lock(r.directory, uid)
            if fd is None:
                busy.append(uid)
            else:
                got.append((uid, fd))
        for uid in busy:
            self._free.remove(uid)
            self._free.append(uid)
        return got

    def _claim(self, uid: int, fd: int) -> None:
        self._free.remove(uid)
        self._held += 1
        if fd >= 0:
            self._range.fds[uid] = fd

    def _prepare(self, uid: int) -> int:
        """Sweep a uid whose previous holder died holding it, and mark it in use; returns the uid."""
        fd = self._range.fds.get(uid)
        if fd is None:
            return uid
        try:
            if os.pread(fd, 1, 0) != _CLEAN:  # dirty, or a lock file never used since boot
                alive = sweep_uid(uid)
                if alive:
                    log.warning(
                        "sandbox uid %d: %d processes of a dead holder survived the sweep", uid, alive
                    )
            os.pwrite(fd, _DIRTY, 0)
        except BaseException:
            self.release(uid, clean=False)
            raise
        return uid

    @contextlib.contextmanager
    def acquire(self, timeout: float) -> Iterator[int]:
        uid = self._take(timeout)
        try:
            yield uid
        finally:
            self.release(uid)

    def _take(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._held < self.size and self._free:
                    got = self._lock_some(1)
                    if got:
                        self._claim(*got[0])
                        uid = got[0][0]
                        break
                    wait = LOCK_POLL_S  # every free uid is held by another process: poll
                else:
                    wait = None  # wait for a release in this process
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SlotsExhausted(self._exhausted(timeout))
                self._cond.wait(left if wait is None else min(left, wait))
        return self._prepare(uid)

    def _exhausted(self, timeout: float) -> str:
        msg = f"no free sandbox uid slot within {timeout:g}s ({self._describe()}): "
        if self._held >= self.size:
            return msg + f"this sandbox already runs {self._held} calls ({self.size} concurrent max)"
        if not self._free:
            return msg + f"this process holds all {len(self._range.uids)} of them"
        return msg + (
            f"the {len(self._free)} not held by this process are held by other processes on this host "
            f"(lock files in {self._range.directory}; other servers need another uid base or fewer slots)"
        )

    def try_acquire(self, reserve: int = 0) -> int | None:
        """A free uid now, or None (the warm pool never waits for one), leaving at least `reserve` uids of the
        range free host-wide for real calls. Give it back with `release`."""
        with self._cond:
            if self._held >= self.size:
                return None
            need = 1 + (reserve if self.switch else 0)
            got = self._lock_some(need)
            if len(got) < need:
                for _, fd in got:
                    if fd >= 0:
                        _unlock(fd, clean=False)
                return None
            for _, fd in got[1:]:  # only probed: still free
                if fd >= 0:
                    _unlock(fd, clean=False)
            self._claim(*got[0])
            uid = got[0][0]
        return self._prepare(uid)

    def release(self, uid: int, clean: bool = True) -> None:
        """Return a uid; only after every process of it was swept (`sweep_uid`). `clean=False` leaves it
        marked dirty, so its next holder sweeps it first."""
        with self._cond:
            fd = self._range.fds.pop(uid, None)
            if fd is not None:
                _unlock(fd, clean)
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
