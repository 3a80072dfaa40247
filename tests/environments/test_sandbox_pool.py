"""The warm pool (environments/sandbox/pool.py) must be invisible except for speed.

Same programs, same limits, cold vs warm: identical status, exit code, signal, output and returned files.
Each parked jail serves exactly one execution and is then destroyed; the pool refills; shutdown leaves no
process behind. (The full security battery also runs through the pool: test_sandbox_security.py.)
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from environments.sandbox import Sandbox, SandboxLimits
from environments.sandbox.pool import python_flavor
from environments.sandbox.runner import POOL_ENV, pool_size_from_env

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("CI"),
    reason="bubblewrap not installed (apt-get install bubblewrap); in CI this fails instead",
)

LIMITS = SandboxLimits(
    wall_timeout_s=5, cpu_s=2, memory_mb=256, nproc=32, fsize_mb=4, tmpfs_mb=8, max_output_bytes=16 << 10
)


def _uid_pids(uids: set[int]) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                if os.stat(f"/proc/{e}").st_uid in uids:
                    out.append(int(e))
            except FileNotFoundError:
                pass
    return out


@pytest.fixture(scope="module")
def cold() -> Sandbox:
    return Sandbox("bwrap", LIMITS, slots=8, pool_size=0)


@pytest.fixture(scope="module")
def warm() -> Sandbox:
    sb = Sandbox("bwrap", LIMITS, slots=8, pool_size=3)
    assert sb.warm is not None and sb.warm.wait_ready(60)
    yield sb
    sb.close()


# (argv, kwargs); every program is deterministic so cold and warm outputs can be compared byte for byte.
CASES = [
    (["python3", "-c", "print(1)"], {}),
    (["python3", "-I", "-c", "import sys; print(sys.argv, sys.flags.isolated, sys.path[0])", "x"], {}),
    (["python3", "-c", "import sys; print(sys.argv, sys.flags.isolated, repr(sys.path[0]))", "y"], {}),
    (["python3", "-c", "print(sorted(globals()), __name__, __loader__, __spec__)"], {}),
    (["python3", "-c", "1/0"], {}),
    (["python3", "-c", "def f():\n    raise KeyError('k')\nf()"], {}),
    (["python3", "-c", "def"], {}),
    (["python3", "-c", "import sys; sys.exit(3)"], {}),
    (["python3", "-c", "import sys; sys.exit('bye')"], {}),
    (["python3", "-c", "import os; os.kill(os.getpid(), 9)"], {}),
    (["python3", "-c", "import atexit; atexit.register(print, 'atexit ran'); print('main')"], {}),
    (["python3", "-c", "import threading, time; threading.Thread(target=lambda: (time.sleep(0.2), print('t'))).start()"], {}),
    (["python3", "-c", "print(input()[::-1])"], {"stdin": "abc\n"}),
    (["python3", "-u", "-c", "import sys; print(sys.flags.unbuffered)"], {}),
    (["python3", "-I", "-S", "-c", "import sys; print(sys.flags.no_site, 'site' in sys.modules)"], {}),
    (
        ["python3", "-I", "main.py", "arg"],
        {
            "files": {"main.py": "import sys, os\nprint(sys.argv, __file__, sorted(globals()))\n"
                      "print(sorted(os.listdir('.')), oct(os.stat('main.py').st_mode), oct(os.stat('d').st_mode))\n"
                      "open('out.txt', 'w').write('made')\nraise ValueError('v')\n", "d/x.txt": "hi"},
            "return_files": ["out.txt", "d/x.txt", "missing"],
        },
    ),
    (["python3", "nosuch.py"], {}),
    (["python3", "main.py"], {"files": {"main.py": "import sys; print(sys.path[0])"}}),
    (["sh", "-c", "echo $((6*7)); ls -la /work | wc -l; id -u >/dev/null; exit 4"], {}),
    (["nosuchcommand"], {}),
    (["python3", "-c", "import time; time.sleep(60)"], {}),
    (["python3", "-c", "while True: print('y' * 4096)"], {}),
    (["python3", "-c", "x = bytearray(512 << 20)"], {}),
    (["python3", "-c", "open('big', 'wb').write(b'x' * (6 << 20))"], {}),
    (["python3", "-c", "import os\nn = 0\nfor _ in range(100):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        import time; time.sleep(2); os._exit(0)\n    n += 1\nprint('forked', n < 32)"], {}),
    (["sh", "-c", "ln -s /etc/passwd link; echo ok > ok.txt"], {"return_files": ["link", "ok.txt"]}),
]  # fmt: skip


def _comparable(res) -> tuple:
    return (res.status, res.exit_code, res.signal, res.stdout, res.stderr, res.truncated, res.files,
            res.file_errors, res.message)  # fmt: skip


def _park(sb: Sandbox, flavor) -> None:
    """Make sure a jail of `flavor` is parked (a first request of a new flavour runs cold by design)."""
    if flavor is None:
        assert sb.warm.wait_ready(60)
        return
    for _ in range(3):
        if any(j.flavor == flavor and j.ready_at for j in sb.warm.idle_jails()):
            return
        sb.run(["python3", *flavor, "-c", "pass"])
        assert sb.warm.wait_ready(60)
    raise AssertionError(f"no jail of flavour {flavor} got parked")


@pytest.mark.parametrize("argv,kw", CASES, ids=[" ".join(c[0])[:40] for c in CASES])
def test_warm_matches_cold(cold, warm, argv, kw):
    _park(warm, python_flavor(argv))
    before = warm.warm.stats.taken
    w = warm.run(argv, **kw)
    assert warm.warm.stats.taken == before + 1, "the call did not go through a parked jail"
    c = cold.run(argv, **kw)
    assert _comparable(w) == _comparable(c)
    assert warm.leftovers == 0 and cold.leftovers == 0


def test_status_of_limits_through_the_pool(warm):
    assert warm.run(["python3", "-c", "import time; time.sleep(60)"]).status == "timeout"
    assert warm.run(["python3", "-c", "while True: print('y' * 4096)"]).status == "output_limit"
    assert "MemoryError" in warm.run(["python3", "-c", "x = bytearray(512 << 20)"]).stderr
    spin = warm.run(
        ["python3", "-c", "while True: pass"], limits=LIMITS.model_copy(update={"wall_timeout_s": 20})
    )
    assert spin.status == "killed" and spin.signal in (signal.SIGKILL, signal.SIGXCPU)  # RLIMIT_CPU, 2 s


def test_no_jail_is_reused_and_nothing_leaks_between_calls(warm):
    taken = []
    real_take = warm.warm.take

    def spy(flavor):
        jail = real_take(flavor)
        taken.append(jail)
        return jail

    warm.warm.take = spy
    try:
        code = (
            "import os, sys, builtins\n"
            "print(hasattr(builtins, 'MARK'), os.path.exists('/tmp/mark'), os.path.exists('/work/mark'))\n"
            "builtins.MARK = 1; open('/tmp/mark', 'w').write('x'); open('/work/mark', 'w').write('x')\n"
        )
        outs = [warm.run(["python3", "-c", code]).stdout for _ in range(6)]
    finally:
        del warm.warm.take
    assert outs == ["False False False\n"] * 6
    assert all(j is not None for j in taken) and len({id(j) for j in taken}) == 6
    assert len({j.proc.pid for j in taken}) == 6
    assert all(j.proc.returncode is not None for j in taken)  # each was destroyed after its call
    assert not set(map(id, taken)) & set(map(id, warm.warm.idle_jails()))


def test_pool_refills_and_follows_demand(warm):
    pool = warm.warm
    assert pool.wait_ready(60)
    spawned = pool.stats.spawned
    for _ in range(pool.size + 2):
        assert warm.run(["python3", "-S", "-c", "print(2)"]).stdout == "2\n"
    assert pool.wait_ready(60) and pool.ready_count == pool.size
    assert pool.stats.spawned >= spawned + pool.size + 2
    # after a burst of -S calls the pool has converted jails to that flavour
    assert any(j.flavor == ("-S",) for j in pool.idle_jails())
    assert pool.stats.failed == 0


def test_parked_jail_killed_from_outside_is_not_used(warm):
    assert warm.warm.wait_ready(60)
    for jail in warm.warm.idle_jails():
        os.killpg(jail.proc.pid, signal.SIGKILL)
    time.sleep(0.2)
    res = warm.run(["python3", "-c", "print(5)"])
    assert res.status == "ok" and res.stdout == "5\n"
    assert warm.leftovers == 0


def test_calls_with_other_jail_limits_run_cold(warm):
    taken = warm.warm.stats.taken
    res = warm.run(["python3", "-c", "print(3)"], limits=LIMITS.model_copy(update={"memory_mb": 300}))
    assert res.stdout == "3\n" and warm.warm.stats.taken == taken
    # wall clock and output caps are per call: still warm
    res = warm.run(["python3", "-c", "print(4)"], limits=LIMITS.model_copy(update={"wall_timeout_s": 9}))
    assert res.stdout == "4\n" and warm.warm.stats.taken == taken + 1


def test_shutdown_leaves_no_process(warm):
    sb = Sandbox("bwrap", LIMITS, slots=8, pool_size=4)
    assert sb.warm.wait_ready(60)
    uids = {j.uid for j in sb.warm.idle_jails()}
    assert len(uids) == 4 and not uids & {j.uid for j in warm.warm.idle_jails()}  # sandboxes share no uid
    assert len(_uid_pids(uids)) >= 4
    assert sb.run(["python3", "-c", "print(1)"]).stdout == "1\n"
    uids |= {j.uid for j in sb.warm.idle_jails()}
    thread = sb.warm._thread
    sb.close()
    assert not thread.is_alive()
    assert _uid_pids(uids) == []
    assert sb.pool.held == 0  # every uid slot was handed back
    assert sb.run(["python3", "-c", "print(1)"]).stdout == "1\n"  # cold still works after close
    assert _uid_pids(uids) == [] and sb.leftovers == 0 and sb.pool.held == 0


def test_pool_configuration(monkeypatch):
    monkeypatch.delenv(POOL_ENV, raising=False)
    assert pool_size_from_env() == 8
    for raw, size in [("0", 0), ("off", 0), ("false", 0), ("3", 3), (" 12 ", 12)]:
        monkeypatch.setenv(POOL_ENV, raw)
        assert pool_size_from_env() == size
    monkeypatch.setenv(POOL_ENV, "lots")
    with pytest.raises(ValueError, match=POOL_ENV):
        pool_size_from_env()
    monkeypatch.setenv(POOL_ENV, "off")
    assert Sandbox("bwrap", LIMITS, slots=8).warm is None
    assert Sandbox("unsafe", LIMITS, slots=8, pool_size=4).warm is None  # no jail to warm
    monkeypatch.delenv(POOL_ENV)
    sb = Sandbox("bwrap", LIMITS, slots=4, pool_size=10)  # capped at half the uid slots
    try:
        assert sb.warm.size == 2
    finally:
        sb.close()


def test_python_flavor():
    assert python_flavor(["python3", "-c", "x"]) == ()
    assert python_flavor(["python3", "-I", "main.py", "a"]) == ("-I",)
    assert python_flavor(["/usr/bin/python3", "-I", "-S", "-c", "x"]) == ("-I", "-S")
    assert python_flavor(["python3", "-m", "json.tool"]) is None
    assert python_flavor(["python3", "-W", "error", "-c", "x"]) is None
    assert python_flavor(["python3", "-I"]) is None
    assert python_flavor(["sh", "-c", "python3 -c x"]) is None


def test_probe_checks_parked_jails_too(monkeypatch, caplog):
    import json

    from environments.sandbox import ExecResult, probe

    sb = Sandbox("bwrap", LIMITS, slots=8, pool_size=2)
    try:
        taken = sb.warm.stats.taken
        assert probe(sb).ok and sb.warm is not None and sb.warm.stats.taken == taken + 1
    finally:
        sb.close()
    bad = Sandbox("bwrap", LIMITS, slots=8, pool_size=2)
    facts = {"uid": 0, "euid": 0, "ifaces": ["lo", "eth0"], "env": ["PATH"], "pid": 2, "net": True}
    monkeypatch.setattr(bad, "_run_warm", lambda *a, **k: ExecResult(status="ok", stdout=json.dumps(facts)))
    result = probe(bad)
    assert result.ok  # cold jails passed: code still runs, cold
    assert bad.warm is None and "warm pool disabled" in caplog.text
    assert bad.run(["python3", "-c", "print(1)"]).stdout == "1\n"
