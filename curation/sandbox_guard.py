"""The second layer inside the sandbox: a Python audit hook against the accidental and the naive.

This file runs *inside* the sandbox (it is copied in as text, so it imports the standard library only).
The boundary is the operating system (bubblewrap, see `curation/sandbox.py`); this hook only turns the
common mistakes of generated code (opening a socket, starting a process, writing outside its folder)
into a clear PermissionError instead of an obscure OS error. Everything it uses is bound at install
time, so replacing `builtins.any`, `builtins.isinstance` or `os.path.realpath` from the sandboxed code
no longer changes what the hook checks.

Run as `python -I -S -u guard.py CONFIG_JSON MAIN_FILE`: installs the hook, then runs MAIN_FILE as
`__main__`. `install(work, deny_read)` is also called by runners that fork first (the evaluator).
"""

import json
import os
import sys

_BLOCKED_PREFIXES = (
    "socket.",
    "subprocess.",
    "os.exec",
    "os.spawn",
    "os.posix_spawn",
    "os.fork",
    "os.forkpty",
    "os.system",
    "os.kill",
    "os.killpg",
    "signal.pthread_kill",
    "ctypes.",
    "gc.get_",
    "urllib.",
    "http.client.",
    "ftplib.",
    "smtplib.",
    "poplib.",
    "imaplib.",
    "nntplib.",
    "telnetlib.",
    "webbrowser.",
    "os.chroot",
    "pty.",
)
_MUTATING = frozenset(
    {
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.utime",
        "shutil.rmtree",
        "shutil.move",
        "shutil.copytree",
    }
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


def _refuse_fork_exec(*args, **kwargs):
    raise PermissionError("sandbox: starting processes is blocked")


def install(
    work,
    deny_read=(),
    *,
    # Bound now: the sandboxed code may replace the builtins and os functions later.
    _realpath=os.path.realpath,
    _fspath=os.fspath,
    _fsdecode=os.fsdecode,
    _isinstance=isinstance,
    _str=str,
    _bytes=bytes,
    _int=int,
    _pathlike=os.PathLike,
    _sep=os.sep,
    _perm=PermissionError,
    _startswith=str.startswith,
    _tuple=tuple,
    _len=len,
):
    """Install the audit hook: `work` is the only folder written to, `deny_read` are never read."""
    import _posixsubprocess

    # subprocess reaches fork/exec through this C function, which raises no audit event of its own.
    _posixsubprocess.fork_exec = _refuse_fork_exec
    work = _realpath(work)
    roots = _tuple(r.rstrip(_sep) + _sep for r in deny_read)
    work_prefix = work.rstrip(_sep) + _sep

    def inside_work(path):
        return path == work or _startswith(path, work_prefix)

    def denied(path):
        for root in roots:
            if path + _sep == root or _startswith(path, root):
                return True
        return False

    def real(path):
        if _isinstance(path, _int):
            return None
        if _isinstance(path, _bytes):
            path = _fsdecode(path)
        return _realpath(_fspath(path))

    def hook(event, args):
        if _startswith(event, _BLOCKED_PREFIXES):
            raise _perm("sandbox: " + event + " is blocked")
        if event == "import" and args and args[0] == "_posixsubprocess":
            raise _perm("sandbox: reloading _posixsubprocess is blocked")
        if event == "open":
            path = real(args[0])
            if path is None or path == "/dev/null":
                return
            flags = args[2] if _len(args) > 2 and _isinstance(args[2], _int) else 0
            mode = args[1] if _isinstance(args[1], _str) else ""
            writing = flags & _WRITE_FLAGS or "w" in mode or "a" in mode or "x" in mode or "+" in mode
            if inside_work(path):
                return
            if writing:
                raise _perm("sandbox: writing outside the sandbox folder is blocked: " + path)
            if denied(path):
                raise _perm("sandbox: reading " + path + " is blocked")
        elif event in _MUTATING or event == "os.listdir" or event == "os.scandir":
            for arg in args[:2]:
                if _isinstance(arg, (_str, _bytes, _pathlike)):
                    path = real(arg)
                    if inside_work(path):
                        continue
                    if event in _MUTATING or denied(path):
                        raise _perm("sandbox: " + event + " on " + path + " is blocked")

    sys.addaudithook(hook)


def _main():
    config = json.loads(sys.argv[1])
    main = sys.argv[2]
    sys.argv = [main]
    sys.path.insert(0, config["work"])
    install(config["work"], config["deny_read"])
    import runpy

    runpy.run_path(main, run_name="__main__")


if __name__ == "__main__":
    _main()
