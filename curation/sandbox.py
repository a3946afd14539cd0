"""Run untrusted, LLM-generated Python code in a separate, limited process.

The execution check (beyond WaveCoder) runs an instance's output code and its asserts. The code comes
from a language model, so it is treated as untrusted: usually harmless, sometimes broken in ways that
loop forever, eat memory, write files or open sockets. `run_python` layers these defences:

1. **A separate process** (`python -I -S -u`): isolated mode ignores PYTHON* variables, the user site
   and the current folder; `-S` keeps the project's virtualenv (and its packages) off `sys.path`, so the
   code sees the standard library only; `-u` keeps the output printed before a timeout. It starts with
   a minimal environment: no inherited secrets.
2. **Namespaces** (Linux, `unshare` from util-linux, when the probe at first use shows they work):
   a new network namespace (no interfaces but a down loopback: nothing can be reached), a new PID
   namespace with its own /proc (the parent's processes and their environments are invisible, and
   every process left inside dies with it). As non-root the same through a user namespace.
   Limit: skipped where the kernel or container forbids namespaces; `sandbox_layers()` tells.
3. **Resource limits** (setrlimit, before any user code runs): CPU seconds, address space (memory),
   file size, open files, processes, no core dumps. Limit: RLIMIT_NPROC does not bind root, so
   process creation is also blocked by layer 5; disk use by many small files is not capped.
4. **An unprivileged user** (`nobody`) when the parent is root and the interpreter is readable by
   others, so the kernel refuses writes outside the sandbox folder, reads of private files and
   signals to other users' processes. Limit: skipped when the interpreter lives in a private folder
   (for example pyenv under /root), since `nobody` could then not import the standard library.
5. **A Python audit hook** installed before the code runs: refuses sockets, subprocesses, fork/exec/
   spawn, signals, ctypes, writing (and deleting, renaming, …) outside the sandbox folder, and reading
   the project's folders, /proc and well-known secret files. Limit: audit hooks are no security boundary
   against code written to escape them (CPython says so); they stop the accidental and the naive, and
   the OS layers above bound the damage where they are available. For deliberately hostile code, run
   the worker in a container or a VM as well.
6. **The parent** kills the whole process group after a wall-clock timeout, caps captured output,
   and removes the temporary working folder afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# Output kept per stream; the rest is dropped (the child may print forever until the timeout).
OUTPUT_CAP_BYTES = 64 * 1024
MAX_FILE_MB = 16
MAX_OPEN_FILES = 64
MAX_PROCESSES = 64
_NOBODY = 65534
_MAIN_FILE = "main.py"

# Files under the home folder that commonly hold credentials; reading them is refused.
_HOME_SECRETS = (
    ".ssh",
    ".aws",
    ".config",
    ".netrc",
    ".pypirc",
    ".docker",
    ".kube",
    ".gnupg",
    ".git-credentials",
    ".bash_history",
    ".python_history",
)
_SYSTEM_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/sudoers", "/proc")


@dataclass(frozen=True)
class SandboxResult:
    """What happened when the code ran. `reason` is empty when ok, else a short human explanation."""

    ok: bool
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    reason: str


# The first thing the child runs. It receives a JSON config as argv[1], sets limits, drops privileges,
# installs the audit hook and then runs main.py as __main__. Kept free of imports the hook later refuses.
_BOOTSTRAP = r"""
import json, os, resource, sys
cfg = json.loads(sys.argv[1])
for name, value in cfg["limits"].items():
    try:
        resource.setrlimit(getattr(resource, name), (value, value))
    except (ValueError, OSError):
        pass
if cfg["drop_to"] is not None and os.getuid() == 0:
    try:
        os.setgroups([])
        os.setgid(cfg["drop_to"])
        os.setuid(cfg["drop_to"])
    except OSError:
        pass

import _posixsubprocess
def _refuse_fork_exec(*args, **kwargs):
    raise PermissionError("sandbox: starting processes is blocked")
# subprocess reaches fork/exec through this C function, which raises no audit event of its own.
_posixsubprocess.fork_exec = _refuse_fork_exec

def _install_hook(work, deny_read, realpath=os.path.realpath, sep=os.sep,
                  WRITE=os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC):
    work = realpath(work)
    blocked_prefixes = ("socket.", "subprocess.", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                        "os.forkpty", "os.system", "os.kill", "os.killpg", "signal.pthread_kill",
                        "ctypes.", "gc.get_", "urllib.", "http.client.", "ftplib.", "smtplib.", "poplib.",
                        "imaplib.", "nntplib.", "telnetlib.", "webbrowser.", "os.chroot", "pty.")
    mutating = {"os.remove", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.symlink",
                "os.link", "os.truncate", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copytree"}

    def inside(path, roots):
        return any(path == r or path.startswith(r.rstrip(sep) + sep) for r in roots)

    def real(path):
        if isinstance(path, int):
            return None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        return realpath(os.fspath(path))

    def hook(event, args):
        if event.startswith(blocked_prefixes):
            raise PermissionError("sandbox: " + event + " is blocked")
        if event == "import" and args and args[0] == "_posixsubprocess":
            raise PermissionError("sandbox: reloading _posixsubprocess is blocked")
        if event == "open":
            path = real(args[0])
            if path is None or path == "/dev/null":
                return
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            mode = args[1] if isinstance(args[1], str) else ""
            writing = flags & WRITE or any(c in mode for c in "wax+")
            if inside(path, (work,)):
                return
            if writing:
                raise PermissionError("sandbox: writing outside the sandbox folder is blocked: " + path)
            if inside(path, deny_read):
                raise PermissionError("sandbox: reading " + path + " is blocked")
        elif event in mutating or event in ("os.listdir", "os.scandir"):
            for arg in args[:2]:
                if isinstance(arg, (str, bytes, os.PathLike)):
                    path = real(arg)
                    if inside(path, (work,)):
                        continue
                    if event in mutating or inside(path, deny_read):
                        raise PermissionError("sandbox: " + event + " on " + path + " is blocked")

    sys.addaudithook(hook)

sys.path.insert(0, cfg["work"])
_install_hook(cfg["work"], tuple(cfg["deny_read"]))
del _install_hook, _refuse_fork_exec, cfg
import runpy
runpy.run_path(sys.argv[2], run_name="__main__")
"""


def run_python(
    code: str,
    *,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    files: dict[str, str] | None = None,
) -> SandboxResult:
    """Run `code` as `__main__` in a fresh, limited process and report how it ended.

    `files` are written next to it first (relative paths only), so tests can `import solution`.
    Defaults come from settings.SANDBOX_TIMEOUT_S and settings.SANDBOX_MEMORY_MB. Never raises for
    anything the code does; raises ValueError only for unsafe `files` names.
    """
    timeout_s = float(timeout_s if timeout_s is not None else settings.SANDBOX_TIMEOUT_S)
    memory_mb = int(memory_mb if memory_mb is not None else settings.SANDBOX_MEMORY_MB)
    with tempfile.TemporaryDirectory(prefix="wavecoder-sandbox-", ignore_cleanup_errors=True) as work:
        main = _write_files(Path(work), code, files or {})
        drop_to = _unprivileged_uid()
        if drop_to is not None:
            for path in [Path(work), *Path(work).rglob("*")]:
                os.chown(path, drop_to, drop_to)
        config = {
            "work": work,
            "drop_to": drop_to,
            "deny_read": _deny_read_roots(),
            "limits": {
                # CPU seconds a little above the wall timeout: the wall clock is the main guard; soft ==
                # hard so the kernel sends SIGKILL, which also stops a PID-namespace init process.
                "RLIMIT_CPU": int(timeout_s) + 1,
                "RLIMIT_AS": memory_mb * 1024 * 1024,
                "RLIMIT_FSIZE": MAX_FILE_MB * 1024 * 1024,
                "RLIMIT_NOFILE": MAX_OPEN_FILES,
                "RLIMIT_NPROC": MAX_PROCESSES,
                "RLIMIT_CORE": 0,
            },
        }
        argv = [
            *_namespace_prefix(),
            sys.executable,
            "-I",
            "-S",
            "-u",
            "-c",
            _BOOTSTRAP,
            json.dumps(config),
            main,
        ]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": work, "TMPDIR": work}
        return _run(argv, env=env, cwd=work, timeout_s=timeout_s)


async def run_python_async(code: str, **kwargs) -> SandboxResult:
    """`run_python` in a worker thread, so an event loop running many LLM calls stays responsive."""
    return await asyncio.to_thread(run_python, code, **kwargs)


def sandbox_layers() -> list[str]:
    """The isolation layers available on this machine, in words (for logs and the docs page)."""
    layers = ["process", "rlimits", "audit-hook", "killpg", "minimal-env"]
    prefix = _namespace_prefix()
    if prefix:
        layers.append("namespaces(" + " ".join(arg for arg in prefix[1:] if arg.startswith("--")) + ")")
    if _unprivileged_uid() is not None:
        layers.append("uid-nobody")
    return layers


def _run(argv: list[str], *, env: dict[str, str], cwd: str, timeout_s: float) -> SandboxResult:
    # Output goes to anonymous files, not pipes: no reader threads, no deadlock, and the child's
    # RLIMIT_FSIZE bounds them too. Only the first OUTPUT_CAP_BYTES are read back.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc.pid)
            proc.wait()
        duration = time.monotonic() - start
        stdout, stderr = _read_capped(out), _read_capped(err)
    returncode = None if timed_out else proc.returncode
    ok = returncode == 0
    return SandboxResult(
        ok=ok,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        duration_s=duration,
        reason="" if ok else _reason(returncode, stderr, timed_out, timeout_s),
    )


def _kill_group(pgid: int) -> None:
    # The session leader's id is the group id; kill everything left in it (also after a normal exit).
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _read_capped(file) -> str:
    size = file.seek(0, os.SEEK_END)
    file.seek(0)
    text = file.read(OUTPUT_CAP_BYTES).decode("utf-8", errors="replace")
    if size > OUTPUT_CAP_BYTES:
        text += f"\n[… {size - OUTPUT_CAP_BYTES} more bytes truncated]"
    return text


def _reason(returncode: int | None, stderr: str, timed_out: bool, timeout_s: float) -> str:
    if timed_out:
        return f"timeout after {timeout_s:g} s"
    assert returncode is not None
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL) and not stderr.strip():
        return "CPU time limit" if returncode == -signal.SIGXCPU else "killed (CPU or memory limit)"
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if any("MemoryError" in line for line in lines[-3:]):
        return "memory limit"
    if any("File too large" in line for line in lines[-3:]):
        return "file size limit"
    blocked = [line for line in lines if "sandbox:" in line]
    if blocked:
        return blocked[-1].split("sandbox:", 1)[1].strip()
    return lines[-1][:300] if lines else f"exit code {returncode}"


def _write_files(work: Path, code: str, files: dict[str, str]) -> str:
    main_name = _MAIN_FILE if _MAIN_FILE not in files else "__sandbox_main__.py"
    for name, content in files.items():
        target = (work / name).resolve()
        if Path(name).is_absolute() or not target.is_relative_to(work.resolve()):
            raise ValueError(f"sandbox file name must be relative and inside the folder: {name!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    main = work / main_name
    main.write_text(code)
    return str(main)


def _deny_read_roots() -> list[str]:
    roots = {settings.BASE_DIR, settings.VAR_DIR, settings.ARTIFACTS_DIR}
    home = Path.home()
    roots.update(home / name for name in _HOME_SECRETS)
    return sorted({os.path.realpath(r) for r in roots} | set(_SYSTEM_SECRETS))


@functools.cache
def _namespace_prefix() -> tuple[str, ...]:
    """The `unshare` command line that works here (probed once), or () when none does."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    base = ("--net", "--pid", "--fork", "--kill-child", "--mount-proc")
    # As root the namespaces come directly; otherwise a user namespace makes them possible.
    candidates = [(unshare, *base)] if os.geteuid() == 0 else []
    candidates.append((unshare, "--user", "--map-root-user", *base))
    for prefix in candidates:
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


@functools.cache
def _unprivileged_uid() -> int | None:
    """`nobody`'s uid when we are root and `nobody` can still run this interpreter; else None."""
    if os.geteuid() != 0:
        return None
    stdlib = Path(os.__file__).resolve().parent
    executable = Path(sys.executable).resolve()
    for path in (stdlib, executable):
        # Every folder above must be searchable by others, the target readable by others.
        for parent in [*reversed(path.parents), path]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH or (parent == path and not mode & stat.S_IROTH):
                return None
    return _NOBODY
