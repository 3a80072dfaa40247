"""uid slots are exclusive host-wide, not just per process (environments/sandbox/jail.py, UidPool).

After each call the slot's uid is swept (every process of it killed). Two processes on one host (a code
server and the reward stack, two pytest workers) that picked the same uid would kill each other's running
or parked jails; per-uid `flock`s make that impossible. These tests use real separate OS processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from environments.sandbox import Sandbox, SandboxLimits, SandboxUnavailable
from environments.sandbox.jail import LOCK_DIR_ENV, LockDirUnsafe, SlotsExhausted, UidPool, prepare_lock_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="uid slots are only switched (and locked) as root")

REPO = Path(__file__).resolve().parents[2]
needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("CI"),
    reason="bubblewrap not installed (apt-get install bubblewrap); in CI this fails instead",
)


def _child(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except FileNotFoundError:
        return True


WORKER = """
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
from environments.sandbox import Sandbox, SandboxLimits

name = sys.argv[1]
limits = SandboxLimits(wall_timeout_s=20, cpu_s=4, memory_mb=256, nproc=32, fsize_mb=4, tmpfs_mb=8)
sb = Sandbox("bwrap", limits, slots=12, pool_size=4)
assert sb.warm.wait_ready(60)
print(json.dumps({"parked": sorted(j.uid for j in sb.warm.idle_jails())}), flush=True)
sys.stdin.readline()  # both processes start their calls together
code = ("import os, sys, time\\nt0 = time.monotonic()\\ntime.sleep(0.04)\\n"
        "print(sys.argv[1], os.getuid(), t0, time.monotonic())")

def call(i):
    token = f"{name}-{i}"
    argv = ["python3", "-c", code, token] if i % 3 else ["python3", "-I", "-c", code, token]
    r = sb.run(argv, warm=i % 5 != 0)  # mostly warm, some cold
    return {"token": token, "status": r.status, "stdout": r.stdout, "stderr": r.stderr[-300:]}

with ThreadPoolExecutor(4) as ex:
    results = list(ex.map(call, range(32)))
stats = sb.warm.stats.as_dict()
sb.close()
print(json.dumps({"results": results, "leftovers": sb.leftovers, "stats": stats, "held": sb.pool.held}))
"""


@needs_bwrap
def test_two_processes_never_share_a_uid_nor_kill_each_others_jobs():
    procs = [_child(WORKER, name) for name in ("a", "b")]
    try:
        parked = [json.loads(p.stdout.readline())["parked"] for p in procs]
        assert len(parked[0]) == 4 and len(parked[1]) == 4
        assert not set(parked[0]) & set(parked[1]), "two processes parked jails under one uid"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [json.loads(p.communicate(timeout=240)[0].strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    spans: dict[int, list[tuple[float, float, str]]] = {}
    for name, out in zip("ab", outs, strict=True):
        assert out["leftovers"] == 0 and out["held"] == 0
        assert out["stats"]["taken"] > 0 and out["stats"]["failed"] == 0
        for r in out["results"]:
            assert r["status"] == "ok", r
            token, uid, t0, t1 = r["stdout"].split()
            assert token == r["token"]
            spans.setdefault(int(uid), []).append((float(t0), float(t1), name))
    # CLOCK_MONOTONIC is host-wide (bwrap does not unshare the time namespace): two calls under one uid,
    # of either process, must never overlap in time.
    for uid, s in spans.items():
        assert 61000 <= uid < 61064
        s.sort()
        for (_, a1, an), (b0, _, bn) in zip(s, s[1:], strict=False):  # in-process calls never overlap either
            assert a1 <= b0, f"uid {uid} ran two calls at once ({an} and {bn})"
    assert {n for s in spans.values() for *_, n in s} == {"a", "b"}


HOLDER = """
import json, subprocess, sys, time
from environments.sandbox.jail import UidPool
pool = UidPool(base=62100, size=4, span=4)
uids = [pool.try_acquire() for _ in range(4)]
stray = subprocess.Popen(["setpriv", "--reuid=62100", "--regid=62100", "--clear-groups", "--",
                          "sleep", "300"], start_new_session=True)
print(json.dumps({"uids": uids, "stray": stray.pid}), flush=True)
time.sleep(300)
"""


def test_exhaustion_times_out_clearly_and_a_killed_holder_frees_its_slots():
    holder = _child(HOLDER)
    info = json.loads(holder.stdout.readline())
    try:
        assert sorted(info["uids"]) == [62100, 62101, 62102, 62103]
        pool = UidPool(base=62100, size=4, span=4)
        t = time.monotonic()
        with pytest.raises(SlotsExhausted, match=r"62100-62103.*held by other processes"), pool.acquire(0.5):
            pass
        assert 0.5 <= time.monotonic() - t < 5
        assert pool.try_acquire() is None and pool.held == 0
        assert not _gone(info["stray"])
        holder.send_signal(signal.SIGKILL)  # dies holding every slot, a process still running under one
        holder.wait(timeout=10)
        held = [pool._take(5) for _ in range(4)]  # the kernel dropped the locks
        assert sorted(held) == [62100, 62101, 62102, 62103]
        assert _gone(info["stray"])  # the dead holder's uid was dirty: swept before reuse
        for uid in held:
            pool.release(uid)
        assert pool.held == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if not _gone(info["stray"]):
            os.kill(info["stray"], signal.SIGKILL)


def test_exhaustion_within_one_process_names_the_range():
    pool = UidPool(base=62200, size=2, span=2)
    with pool.acquire(1) as a, pool.acquire(1) as b:
        assert {a, b} == {62200, 62201}
        other = UidPool(base=62200, size=2, span=2)  # another Sandbox of this process: same range
        with pytest.raises(SlotsExhausted, match="62200-62201"), other.acquire(0.2):
            pass
        with pytest.raises(SlotsExhausted, match="2 concurrent max"), pool.acquire(0.1):
            pass
    assert pool.held == 0 and other.held == 0


def test_a_slot_is_never_both_parked_and_probed_free():
    """try_acquire(reserve=N) takes a uid only when N more are free host-wide, and leaves them free."""
    pool = UidPool(base=62300, size=4, span=4)
    first = pool.try_acquire(reserve=2)
    assert first is not None
    assert pool.try_acquire(reserve=3) is None  # only 3 left
    second = pool.try_acquire(reserve=2)
    assert second is not None and second != first
    assert pool.try_acquire(reserve=2) is None
    with pool.acquire(1) as a, pool.acquire(1) as b:  # the probed ones were let go
        assert {a, b, first, second} == set(range(62300, 62304))
    pool.release(first)
    pool.release(second)
    assert pool.held == 0


FORKER = """
import json, os, sys, time
from environments.sandbox.jail import UidPool
pool = UidPool(base=62400, size=1, span=1)
uid = pool.try_acquire()
pid = os.fork()
if pid == 0:
    time.sleep(60)
    os._exit(0)
print(json.dumps({"uid": uid, "child": pid}), flush=True)
os._exit(0)  # the parent dies holding the slot; its forked child lives on
"""


def test_a_forked_child_does_not_keep_its_parents_slots():
    proc = _child(FORKER)
    info = json.loads(proc.stdout.readline())
    proc.wait(timeout=10)
    try:
        assert info["uid"] == 62400 and not _gone(info["child"])
        with UidPool(base=62400, size=1, span=1).acquire(2) as uid:
            assert uid == 62400
    finally:
        os.kill(info["child"], signal.SIGKILL)


@pytest.fixture
def open_dir(tmp_path: Path) -> Path:
    """A directory anyone may write to (chmod past the umask): unsafe for uid locks."""
    path = tmp_path / "open"
    path.mkdir()
    path.chmod(0o777)
    return path


def test_lock_dir_must_be_root_only(open_dir):
    with pytest.raises(LockDirUnsafe, match="absolute"):
        prepare_lock_dir("relative/dir")
    with pytest.raises(LockDirUnsafe, match="writable by group or others"):
        prepare_lock_dir(str(open_dir / "locks"))
    assert prepare_lock_dir("/run/agentrl-sandbox") == "/run/agentrl-sandbox"
    assert oct(os.stat("/run/agentrl-sandbox").st_mode & 0o777) == "0o700"


@needs_bwrap
def test_no_sandbox_without_a_safe_lock_dir(open_dir, monkeypatch):
    monkeypatch.setenv(LOCK_DIR_ENV, str(open_dir / "locks"))  # fail closed: no Sandbox without locks
    with pytest.raises(SandboxUnavailable, match="lock directory"):
        Sandbox("bwrap", SandboxLimits(), slots=4, pool_size=0)


PARKER = """
import json, time
from environments.sandbox import Sandbox, SandboxLimits
sb = Sandbox("bwrap", SandboxLimits(wall_timeout_s=5, cpu_s=2, memory_mb=256, nproc=32), slots=8, pool_size=3)
assert sb.warm.wait_ready(60)
print(json.dumps({"parked": sorted(j.uid for j in sb.warm.idle_jails())}), flush=True)
time.sleep(300)
"""


@needs_bwrap
def test_a_killed_server_with_parked_jails_frees_their_uids():
    from environments.sandbox.jail import _try_lock, lock_dir_path, sweep_uid

    proc = _child(PARKER)
    try:
        parked = json.loads(proc.stdout.readline())["parked"]
        assert len(parked) == 3
        directory = lock_dir_path()
        assert all(_try_lock(directory, uid) is None for uid in parked)  # held while parked
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    fds = [_try_lock(directory, uid) for uid in parked]
    try:
        assert all(fd is not None for fd in fds)  # the kernel released them with the process
        assert all(os.pread(fd, 1, 0) == b"1" for fd in fds)  # dirty: the next holder sweeps first
        deadline = time.monotonic() + 10
        while _live_pids(set(parked)) and time.monotonic() < deadline:  # the jails die with their parent
            time.sleep(0.05)
        assert _live_pids(set(parked)) == [], "the killed server's parked jails are still alive"
        for uid in parked:  # as their holder now: reap any zombie reparented to us (a subreaper)
            sweep_uid(uid)
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)


def _live_pids(uids: set[int]) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        try:
            if e.isdigit() and os.stat(f"/proc/{e}").st_uid in uids and not _gone(int(e)):
                out.append(int(e))
        except FileNotFoundError:
            pass
    return out
