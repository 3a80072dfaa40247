"""The security battery: one test per attack in sandbox.md's threat list, run through the code env server.

Every test asserts that the jail contained the attempt AND that the server is still healthy afterwards
(health answers, a fresh `print(1)` still runs, and no process is left under the sandbox uids).
The battery runs twice: with cold jails (`pool_size=0`) and through the warm pool (pool.py), whose parked,
never-used jails are the only sandbox processes allowed to exist between calls.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

from environments.code.server import create_app
from environments.protocol import ServerSettings
from environments.sandbox import Sandbox, SandboxLimits
from environments.sandbox.runner import parked_jails

pytestmark = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("CI"),
    reason="bubblewrap not installed (apt-get install bubblewrap); in CI this fails instead",
)

LIMITS = SandboxLimits(
    wall_timeout_s=6, cpu_s=2, memory_mb=256, nproc=32, fsize_mb=4, tmpfs_mb=8, max_output_bytes=64 << 10
)
SECRET = "agentrl-secret-" + secrets.token_hex(8)


@pytest.fixture(scope="module", params=[0, 3], ids=["cold", "warm"])
def sandbox(request) -> Sandbox:
    sb = Sandbox("bwrap", LIMITS, slots=8, pool_size=request.param)
    if sb.warm is not None:
        assert sb.warm.wait_ready(60)
    yield sb
    if sb.warm is not None:  # the warm battery really went through parked jails
        print("warm pool stats:", sb.warm.stats)
        assert sb.warm.stats.taken >= 20 and sb.warm.stats.destroyed >= sb.warm.stats.taken
    sb.close()
    assert sb.warm is None or sb.warm.idle_jails() == []
    assert _sandbox_pids(sb) == []  # (other live pools' parked jails excepted)


@pytest.fixture(scope="module")
def client(sandbox):
    os.environ["AGENTRL_TEST_SECRET"] = SECRET  # the server's env holds a secret the jail must not see
    try:
        with TestClient(create_app(ServerSettings(), sandbox=sandbox)) as c:
            yield c
    finally:
        os.environ.pop("AGENTRL_TEST_SECRET", None)


def _sandbox_pids(sandbox: Sandbox | None = None) -> list[int]:
    """Live processes under the sandbox uids, except those of warm pools' parked jails (never used by any
    call): a parked jail's uid may hold only its own chain (bwrap, bwrap's pid-1, the waiting stub)."""
    parked = {j.proc.pid: j.uid for j in parked_jails()} if sandbox else {}
    uid, parent = {}, {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat", "rb") as f:
                    parent[int(e)] = int(f.read().rsplit(b")", 1)[1].split()[1])
                uid[int(e)] = os.stat(f"/proc/{e}").st_uid
            except (FileNotFoundError, ProcessLookupError):
                pass
    left, per_jail = [], dict.fromkeys(parked, 0)
    for pid, u in uid.items():
        if not 61000 <= u < 61064:
            continue
        root = pid
        while root not in parked and parent.get(root, 0) > 1:
            root = parent[root]
        if root in parked and parked[root] == u:
            per_jail[root] += 1
        else:
            left.append(pid)
    assert all(n <= 3 for n in per_jail.values()), per_jail
    return left


def _call(client: TestClient, tool: str, **args) -> str:
    sid = client.post("/sessions", json={"task_id": "add-two"}).json()["session_id"]
    r = client.post(
        f"/sessions/{sid}/step",
        json={"tool_calls": [{"id": "1", "name": tool, "arguments": json.dumps(args)}]},
    )
    assert r.status_code == 200, r.text
    client.delete(f"/sessions/{sid}")
    return r.json()["messages"][0]["content"]


def py(client: TestClient, code: str) -> str:
    return _call(client, "run_python", code=code)


def sh(client: TestClient, command: str) -> str:
    return _call(client, "run_shell", command=command)


def assert_healthy(client: TestClient, sandbox: Sandbox) -> None:
    assert client.get("/health").json()["status"] == "healthy"
    sid = client.post("/sessions", json={"task_id": "add-two"}).json()["session_id"]
    assert client.delete(f"/sessions/{sid}").status_code == 200
    # The server's own sandbox still runs code (generous wall clock: CI machines are shared and noisy).
    res = sandbox.run(
        ["python3", "-c", "print(6 * 7)"], limits=LIMITS.model_copy(update={"wall_timeout_s": 60})
    )
    assert res.status == "ok" and res.stdout == "42\n"
    # A killed jail's processes are reaped asynchronously; on a loaded machine that can take a moment. A real
    # leak outlives the grace period.
    deadline = time.monotonic() + 15
    while (left := _sandbox_pids(sandbox)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == []
    assert sandbox.leftovers == 0


def test_network_egress_and_host_loopback_blocked(client, sandbox):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        out = py(
            client,
            f"""
import socket
for host, port in [("127.0.0.1", {port}), ("1.1.1.1", 53), ("10.0.0.1", 80)]:
    try:
        socket.create_connection((host, port), timeout=1); print("CONNECTED", host)
    except OSError as e:
        print("blocked", host, e.errno)
print("ifaces", [n for _, n in socket.if_nameindex()])
try:
    socket.getaddrinfo("example.com", 80); print("DNS OK")
except OSError:
    print("no dns")
""",
        )
        assert "CONNECTED" not in out and out.count("blocked") == 3
        assert "ifaces ['lo']" in out and "no dns" in out
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()
    finally:
        listener.close()
    assert_healthy(client, sandbox)


def test_host_files_cannot_be_read_or_written(client, sandbox, tmp_path):
    marker = tmp_path / "host-secret.txt"
    marker.write_text(SECRET)
    out = py(
        client,
        f"""
import os
for p in ["/etc/shadow", "/etc/passwd", "/root/.bashrc", "{marker}", "/proc/1/root/etc/shadow", "{os.getcwd()}/pyproject.toml"]:
    try:
        print("READ", p, open(p).read()[:20])
    except OSError as e:
        print("denied", p, e.errno)
for p in ["/usr/pwned", "/etc/pwned", "/pwned", "/bin/pwned"]:
    try:
        open(p, "w").write("x"); print("WROTE", p)
    except OSError as e:
        print("nowrite", p, e.errno)
""",
    )
    assert "READ" not in out and "WROTE" not in out and SECRET not in out
    assert out.count("denied") == 6 and out.count("nowrite") == 4
    assert not os.path.exists("/usr/pwned") and marker.read_text() == SECRET
    assert_healthy(client, sandbox)


def test_host_processes_invisible_and_unkillable(client, sandbox):
    me = os.getpid()
    out = py(
        client,
        f"""
import os, signal
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
print("pids", pids)
try:
    os.kill({me}, 0); print("SEES server")
except OSError as e:
    print("nosuch", e.errno)
try:
    os.kill(-1, signal.SIGKILL)
except OSError as e:
    print("kill -1", e.errno)
""",
    )
    assert "SEES" not in out
    pids = json.loads(out.split("pids ")[1].split("\n")[0])
    assert len(pids) <= 4 and "nosuch 3" in out  # ESRCH: the server's pid does not exist in the jail
    assert_healthy(client, sandbox)


def test_fork_bomb_is_contained(client, sandbox):
    out = sh(client, "bomb() { bomb | bomb & }; bomb; sleep 2; echo done")
    assert "status:" in out
    out2 = py(
        client,
        """
import os
n = 0
for _ in range(200):
    try:
        if os.fork() == 0:
            import time; time.sleep(3); os._exit(0)
        n += 1
    except OSError:
        break
print("forked", n)
""",
    )
    assert int(out2.split("forked ")[1].split()[0]) < LIMITS.nproc
    time.sleep(0.2)
    assert_healthy(client, sandbox)


def test_memory_bomb_is_contained(client, sandbox):
    out = py(client, "blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))")
    assert "MemoryError" in out
    out = py(client, "x = bytearray(2 << 30)")
    assert "MemoryError" in out
    assert_healthy(client, sandbox)


def test_many_process_memory_bomb_hits_the_jail_total(client, sandbox):
    """RLIMIT_AS is per process; the slot's memory cgroup caps the jail as a whole."""
    if not (sandbox.cgroups and sandbox.cgroups.available):
        pytest.skip("no writable memory cgroup here (e.g. inside docker, where the container limit applies)")
    bomb = """
import os, time
kids = []
for i in range(6):
    pid = os.fork()
    if pid == 0:
        try:
            b = bytearray(200 << 20)
            for j in range(0, len(b), 4096):
                b[j] = 1
            time.sleep(1)
            os._exit(0)
        except MemoryError:
            os._exit(3)
    kids.append(pid)
print("survivors", sum(1 for p in kids if os.waitpid(p, 0)[1] == 0))
"""
    # On a loaded 2-core box six forks touching 200 MiB under the cgroup's reclaim can outlast the 6 s wall clock
    # (the jail is killed: contained, but no count to check); one retry, then the output is the failure message.
    out = py(client, bomb)
    if "survivors " not in out and "status: timeout" in out:
        out = py(client, bomb)
    assert "survivors " in out, out
    # 6 x 200 MiB fits each process's 256 MiB RLIMIT_AS but not the jail's 256 MiB total.
    assert int(out.split("survivors ")[1].split()[0]) <= 1, out
    assert_healthy(client, sandbox)


def test_cpu_spin_is_killed(client, sandbox):
    t = time.monotonic()
    out = py(client, "while True:\n    pass")
    assert "status: killed" in out or "status: timeout" in out
    assert time.monotonic() - t < LIMITS.wall_timeout_s + 5
    assert_healthy(client, sandbox)


def test_endless_sleep_hits_wall_clock(client, sandbox):
    t = time.monotonic()
    out = py(client, "import time\ntime.sleep(10**6)")
    assert "status: timeout" in out and "wall-clock" in out
    assert time.monotonic() - t < LIMITS.wall_timeout_s + 5
    assert_healthy(client, sandbox)


def test_disk_fill_is_capped(client, sandbox):
    out = py(
        client,
        """
import os
total = 0
for d in ["/work", "/tmp", "/dev/shm", "/dev", "/", "/etc"]:
    for i in range(1000):
        try:
            with open(f"{d}/f{i}", "wb") as f:
                f.write(b"x" * (1 << 20))
            total += 1 << 20
        except OSError as e:
            print("stopped", d, e.errno)
            break
print("total_mb", total >> 20)
""",
    )
    assert out.count("stopped") == 6
    assert int(out.split("total_mb ")[1].split()[0]) <= 3 * LIMITS.tmpfs_mb
    out = py(client, "open('big', 'wb').write(b'x' * (6 << 20))")  # over RLIMIT_FSIZE (4 MiB)
    assert "status: killed" in out or "File too large" in out or "status: error" in out
    assert_healthy(client, sandbox)


def test_output_flood_is_capped(client, sandbox):
    out = py(client, "while True:\n    print('y' * 4096)")
    assert "status: output_limit" in out
    res = sandbox.run(["python3", "-c", "import sys\nwhile True: sys.stderr.write('e' * 65536)"])
    assert res.status == "output_limit" and res.truncated and len(res.stderr) == LIMITS.max_output_bytes
    assert_healthy(client, sandbox)


def test_orphans_and_daemons_do_not_survive(client, sandbox):
    tag = str(900000 + secrets.randbelow(99999))
    out = sh(
        client, f"setsid sleep {tag} & nohup sleep {tag} >/dev/null 2>&1 & (sleep {tag} &) ; echo started"
    )
    assert "started" in out
    py(
        client,
        f"import os, subprocess\nif os.fork() == 0:\n    os.setsid()\n    subprocess.Popen(['sleep', '{tag}'])\n",
    )
    time.sleep(0.2)
    survivors = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/cmdline") as f:
                    if tag in f.read():
                        survivors.append(e)
            except OSError:
                pass
    assert survivors == []
    assert_healthy(client, sandbox)


def test_privilege_escalation_and_nested_userns_fail(client, sandbox):
    out = py(
        client,
        """
import ctypes, os
print("uid", os.getuid(), os.geteuid())
st = open("/proc/self/status").read()
print("caps", [l for l in st.splitlines() if l.startswith(("CapEff", "NoNewPrivs"))])
for fn in (lambda: os.setuid(0), lambda: os.setgid(0)):
    try:
        fn(); print("ROOT")
    except OSError as e:
        print("denied", e.errno)
libc = ctypes.CDLL(None, use_errno=True)
for flag, name in [(0x10000000, "userns"), (0x00020000, "mountns")]:
    rc = libc.unshare(flag)
    print(name, "UNSHARED" if rc == 0 else f"refused {ctypes.get_errno()}")
rc = libc.mount(b"none", b"/work", b"tmpfs", 0, None)
print("mount", "MOUNTED" if rc == 0 else "refused")
""",
    )
    assert "uid 0" not in out and "ROOT" not in out and "UNSHARED" not in out and "MOUNTED" not in out
    assert "CapEff:\\t0000000000000000" in out and "NoNewPrivs:\\t1" in out
    out = sh(client, "unshare -U -r id 2>&1; echo rc=$?")
    assert "uid=0" not in out and "rc=0" not in out
    assert_healthy(client, sandbox)


def test_proc_and_environment_leak_nothing(client, sandbox):
    assert os.environ["AGENTRL_TEST_SECRET"] == SECRET
    out = py(
        client,
        """
import os
print(sorted(os.environ))
for p in os.listdir("/proc"):
    if p.isdigit():
        for f in ("environ", "cmdline"):
            try:
                print(p, f, open(f"/proc/{p}/{f}", "rb").read().replace(b"\\0", b" ")[:300])
            except OSError as e:
                print(p, f, "denied")
print(open("/proc/mounts").read())
""",
    )
    assert SECRET not in out and "AGENTRL" not in out
    assert "['HOME', 'LANG', 'PATH', 'PWD', 'PYTHONDONTWRITEBYTECODE']" in out
    assert "/work/main" not in out and "/root" not in out
    assert_healthy(client, sandbox)


def test_symlink_tricks_on_returned_files(client, sandbox):
    res = sandbox.run(
        [
            "sh",
            "-c",
            "ln -s /etc/passwd passwd_link; ln -s /proc/1/environ env_link; mkdir real; ln -s / root_dir;"
            " mkfifo fifo; head -c 3000000 /dev/zero > big; echo fine > ok.txt",
        ],
        return_files=["passwd_link", "env_link", "root_dir/etc/passwd", "fifo", "big", "ok.txt"],
    )
    assert res.files == {"ok.txt": "fine\n"}
    errs = res.file_errors
    assert "symlink refused" in errs["passwd_link"] and "symlink refused" in errs["env_link"]
    assert "escapes /work" in errs["root_dir/etc/passwd"]
    assert errs["fifo"] == "not a regular file" and "cap" in errs["big"]
    for bad in ("../etc/passwd", "/etc/passwd", "a/./b"):
        with pytest.raises(ValueError, match="bad file name"):
            sandbox.run(["true"], return_files=[bad])
        with pytest.raises(ValueError, match="bad file name"):
            sandbox.run(["true"], files={bad: "x"})
    assert_healthy(client, sandbox)


def test_sessions_cannot_reach_each_other(client, sandbox):
    tag = secrets.token_hex(6)
    results: dict[str, str] = {}

    def victim() -> None:
        results["a"] = py(
            client,
            f"import time, os\nopen('/tmp/{tag}', 'w').write('a')\nopen('/work/{tag}', 'w').write('a')\n"
            f"time.sleep(2.5)\nprint('alive', os.path.exists('/tmp/{tag}'))",
        )

    t = threading.Thread(target=victim)
    t.start()
    time.sleep(1.0)
    results["b"] = py(
        client,
        f"""
import os, signal
print("files", os.path.exists('/tmp/{tag}'), os.path.exists('/work/{tag}'))
pids = [p for p in os.listdir('/proc') if p.isdigit()]
cmds = [open(f'/proc/{{p}}/cmdline', 'rb').read() for p in pids]
print("sees_victim", any(b'{tag}' in c for c in cmds))
for p in pids:
    if int(p) != os.getpid():
        try: os.kill(int(p), signal.SIGKILL)
        except OSError: pass
""",
    )
    t.join()
    assert "files False False" in results["b"] and "sees_victim False" in results["b"]
    assert "alive True" in results["a"]
    assert_healthy(client, sandbox)
