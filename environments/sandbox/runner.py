"""`Sandbox.run`: one command in a fresh jail, with a wall-clock kill, output caps and no leftovers.

Blocking by design (called from worker threads). Output is read with a selector so a flood or a hang is
detected while it happens; on timeout or flood the whole process group is SIGKILLed, which (through
--die-with-parent and the pid namespace) takes every process in the jail with it, daemons included. A
final sweep kills anything still running under the slot's uid before the uid is reused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import signal
import subprocess
import time
from importlib import resources
from typing import Literal

from environments.sandbox.cgroup import MemoryCgroups, join_prefix
from environments.sandbox.jail import (
    UidPool,
    become_subreaper,
    bwrap_argv,
    drop_privileges_prefix,
    find_tools,
    rlimit_prefix,
    sweep_uid,
)
from environments.sandbox.limits import ExecResult, SandboxLimits

log = logging.getLogger(__name__)

Mode = Literal["bwrap", "unsafe"]
COLLECTOR_PATH = "/.sandbox/collect.py"
_SIGNALS = {s.value: s.name for s in signal.Signals}
_SIGNAL_HINTS = {
    signal.SIGKILL: " (a hard limit: CPU time or memory)",
    signal.SIGXCPU: " (CPU time limit)",
    signal.SIGXFSZ: " (file size limit)",
}


class SandboxUnavailable(RuntimeError):
    """Isolation is not available here and unsafe mode was not requested."""


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

    def __init__(self, mode: Mode = "bwrap", limits: SandboxLimits | None = None, slots: int = 64) -> None:
        tools = find_tools()
        if tools["prlimit"] is None or tools["setpriv"] is None:
            raise SandboxUnavailable("prlimit and setpriv (util-linux) are not installed")
        if mode == "bwrap" and tools["bwrap"] is None:
            raise SandboxUnavailable("bwrap (bubblewrap) is not installed")
        self.mode: Mode = mode
        self.limits = limits or SandboxLimits()
        self.tools = tools
        self.pool = UidPool(size=slots)
        self.subreaper = become_subreaper() if mode == "bwrap" else False
        self.cgroups = MemoryCgroups() if self.pool.switch else None
        self.leftovers = 0  # live processes found after a call: must stay 0 (tests check it)
        self._collector = resources.files("environments.sandbox").joinpath("collect.py").read_bytes()

    def run(
        self,
        argv: list[str],
        *,
        stdin: str | bytes = b"",
        files: dict[str, str | bytes] | None = None,
        return_files: list[str] | None = None,
        limits: SandboxLimits | None = None,
    ) -> ExecResult:
        """Run `argv` (inside the jail, cwd /work) with `files` written to /work first."""
        if not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
            raise ValueError("argv must be a non-empty list of strings without NUL bytes")
        limits = limits or self.limits
        files = {_check_name(k): v for k, v in (files or {}).items()}
        return_files = [_check_name(n) for n in (return_files or [])]
        stdin_b = stdin.encode() if isinstance(stdin, str) else stdin
        with self.pool.acquire(timeout=limits.wall_timeout_s + 30) as uid:
            try:
                return self._run(argv, stdin_b, files, return_files, limits, uid)
            finally:
                if self.pool.switch:
                    self.leftovers += sweep_uid(uid)

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

    def _spawn(self, full, stdin, limits, uid, pass_fds, result_r, result_w, cwd) -> ExecResult:
        start = time.monotonic()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
        if self.pool.switch:
            full = drop_privileges_prefix(self.tools["setpriv"], uid) + full
            procs = self.cgroups.prepare(uid, limits.memory_mb) if self.cgroups else None
            if procs:
                full = join_prefix(procs) + full
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=pass_fds,
                process_group=0,
                env=env,
                cwd=cwd,
            )
        except OSError as exc:
            return ExecResult(status="sandbox_error", message=f"cannot start the sandbox: {exc}")
        if result_w is not None:
            os.close(result_w)
        out, err, res = bytearray(), bytearray(), bytearray()
        status, truncated, message = None, False, ""
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        if result_r is not None:
            sel.register(result_r, selectors.EVENT_READ, res)
        pending_in = memoryview(stdin)
        if pending_in:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE, None)
        else:
            proc.stdin.close()
        deadline = start + limits.wall_timeout_s
        cap = limits.max_output_bytes
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                status = "timeout"
                break
            for key, _ in sel.select(timeout=min(left, 0.5)):
                if key.data is None:  # stdin writable
                    try:
                        n = os.write(key.fd, pending_in[:65536])
                        pending_in = pending_in[n:]
                    except (BrokenPipeError, OSError):
                        pending_in = pending_in[:0]
                    if not pending_in:
                        sel.unregister(key.fileobj)
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
