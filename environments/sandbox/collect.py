"""Runs *inside* the jail: start the user command, wait, then send back the requested files.

Usage: python3 -I -S collect.py FD MAX_BYTES NAMES_JSON -- CMD...
Files are opened with O_NOFOLLOW and must be regular files under /work: a symlink planted by the user code
(to /proc/1/environ, /etc/..., another file) is refused instead of followed. The host never reads the
jail's filesystem itself, so host-side symlink races cannot happen. Stdlib only; no project imports.
"""

import json
import os
import stat
import subprocess
import sys


def _read(name: str, max_bytes: int) -> tuple[str, str]:
    if name.startswith("/") or ".." in name.split("/"):
        return "error", "path must be relative to /work without '..'"
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0)
    try:
        # O_NOFOLLOW only guards the last component: resolve parents and insist they stay in /work.
        parent = os.path.realpath(os.path.dirname(os.path.join("/work", name)))
        if parent != "/work" and not parent.startswith("/work/"):
            return "error", "path escapes /work through a symlinked directory"
        fd = os.open(os.path.join("/work", name), flags)
    except OSError as exc:
        return "error", f"cannot open: {exc.strerror}" + (" (symlink refused)" if exc.errno == 40 else "")
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "error", "not a regular file"
        if st.st_size > max_bytes:
            return "error", f"file is {st.st_size} bytes, over the {max_bytes}-byte cap"
        data = os.read(fd, max_bytes + 1)
        return "ok", data.decode("utf-8", errors="replace")
    finally:
        os.close(fd)


def send_files(fd: int, names: list[str], max_bytes: int) -> None:
    """Write {"files": {name: text}, "errors": {name: reason}} as JSON to `fd` (and close it)."""
    out: dict[str, dict[str, str]] = {"files": {}, "errors": {}}
    for name in names:
        kind, value = _read(name, max_bytes)
        out["files" if kind == "ok" else "errors"][name] = value
    with os.fdopen(fd, "w") as f:
        json.dump(out, f)


def main() -> int:
    fd, max_bytes, names = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    os.set_inheritable(fd, False)
    try:
        rc = subprocess.call(cmd)
    except OSError as exc:
        print(f"cannot run {cmd[0]!r}: {exc.strerror}", file=sys.stderr)
        rc = 127
    send_files(fd, names, max_bytes)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
