"""Runs *inside* a pre-spawned jail (the warm pool, pool.py): wait for one request, then become it.

Why: a jailed `python3 -c 'print(1)'` spends most of its time starting things (sh, setpriv, prlimit, bwrap's
namespaces and mounts, then the interpreter and `site`); the code itself takes microseconds. A warm jail has
done all of that before the request exists, so an execution only pays for handing the request over a pipe.

Usage (by the host): python3 [FLAGS] /.sandbox/warm.py CTL_FD RES_FD
1. Write b"R" to RES_FD: ready.
2. Read one request from CTL_FD (8-byte little-endian length + marshal; written by the trusted host only):
   {"argv", "files": [(name, bytes)], "dirs", "return_files", "max_file_bytes"}. EOF before a whole request
   (pool shutdown) exits 0 without running anything.
3. Write the files to /work exactly as the cold path's `bwrap --perms 0644 --file` would.
4. With return_files: fork; the parent waits, collects the files with collect.py's rules (O_NOFOLLOW,
   regular files under /work, size cap) and writes the JSON to RES_FD, as the cold path's collector does.
5. Run argv. When it is `python3 FLAGS -c CODE ...` or `python3 FLAGS SCRIPT ...` with exactly the flags
   this interpreter was started with, the code runs in *this* interpreter (fresh, never used before, and it
   exits afterwards) set up as the real command would see it: `__main__`, sys.argv, sys.orig_argv,
   sys.path[0], tracebacks without this file's frames, exit status. Anything else is exec'd (execvp),
   which is what bwrap would have done.

One interpreter serves exactly one request: nothing survives from one execution to the next. Stdlib only;
no project imports. Everything the request carries is the caller's own data.
"""

import marshal
import os
import sys

_HERE = __file__


def _read_exact(fd, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _write_files(files, dirs):
    for d in dirs:
        os.mkdir("/work/" + d, 0o755)
        os.chmod("/work/" + d, 0o755)
    for name, data in files:
        fd = os.open("/work/" + name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)


def _in_process_form(argv):
    """("c", code, args) / ("script", path, args) when argv is this interpreter with its own flags."""
    if len(argv) < 2:
        return None
    exe = argv[0] if "/" in argv[0] else _which(argv[0])
    if exe is None or os.path.realpath(exe) != os.path.realpath(sys.executable):
        return None
    flags = tuple(sys.orig_argv[1 : sys.orig_argv.index(_HERE)])
    rest = argv[1:]
    if tuple(rest[: len(flags)]) != flags:
        return None
    rest = rest[len(flags) :]
    if len(rest) >= 2 and rest[0] == "-c":
        return "c", rest[1], rest[2:]
    if rest and not rest[0].startswith("-"):
        if not sys.flags.no_user_site and not sys.flags.no_site:
            import site

            if os.path.isdir(site.getusersitepackages()):
                return None  # the request created a user site dir: only a real start would add it
        return "script", rest[0], rest[1:]
    return None


def _which(name):
    for d in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _exec(argv):
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        # bwrap's own wording and status for a command that cannot be started
        os.write(2, f"bwrap: execvp {argv[0]}: {exc.strerror}\n".encode(errors="replace"))
        os._exit(1)


def _run_python(kind, target, args, argv):
    import builtins
    import types

    main = types.ModuleType("__main__")
    g = main.__dict__
    g["__builtins__"], g["__annotations__"] = builtins, {}
    if kind == "c":
        sys.argv = ["-c", *args]
        if not sys.flags.safe_path:
            sys.path.insert(0, "")
        g["__loader__"] = sys.modules["_frozen_importlib"].BuiltinImporter
        name, source = "<string>", target
    else:
        sys.argv = [target, *args]
        path = os.path.abspath(target)
        if not sys.flags.safe_path:
            sys.path.insert(0, os.path.dirname(path))
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError:
            _exec(argv)  # let the real interpreter report it, in its own words
        from importlib.machinery import SourceFileLoader

        g["__file__"], g["__cached__"] = path, None
        g["__loader__"] = SourceFileLoader("__main__", path)
        name = path
    sys.orig_argv = list(argv)
    sys.modules["__main__"] = main
    try:
        exec(compile(source, name, "exec"), g)
    except SystemExit:
        raise  # handled by the interpreter itself, as for any program
    except BaseException as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename == _HERE:
            tb = tb.tb_next
        exc = exc.with_traceback(tb)
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
        sys.excepthook(type(exc), exc, tb)
        if isinstance(exc, KeyboardInterrupt):
            import atexit
            import contextlib
            import signal

            atexit._run_exitfuncs()
            for f in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    f.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        del exc, tb
        raise SystemExit(1) from None


def _collect(res_fd, child, names, max_bytes):
    _, status = os.waitpid(child, 0)
    rc = os.waitstatus_to_exitcode(status)
    sys.path.insert(0, "/.sandbox")
    from collect import send_files

    send_files(res_fd, names, max_bytes)
    os._exit(rc if rc >= 0 else 128 - rc)


def main():
    ctl, res = int(sys.argv[1]), int(sys.argv[2])
    os.write(res, b"R")
    head = _read_exact(ctl, 8)
    size = int.from_bytes(head, "little") if len(head) == 8 else -1
    data = _read_exact(ctl, size) if size >= 0 else b""
    if size < 0 or len(data) != size:
        os._exit(0)  # no request: the pool is shutting down
    os.close(ctl)
    req = marshal.loads(data)
    del data
    argv = req["argv"]
    try:
        _write_files(req["files"], req["dirs"])
    except OSError as exc:
        os.write(2, f"bwrap: Can't write data to file: {exc.strerror}\n".encode(errors="replace"))
        os._exit(1)
    if req["return_files"]:
        child = os.fork()
        if child:
            _collect(res, child, req["return_files"], req["max_file_bytes"])
    os.close(res)
    form = _in_process_form(argv)
    del req
    if form is None:
        _exec(argv)
    _run_python(*form, argv)


main()
