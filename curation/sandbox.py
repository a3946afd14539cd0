"""Run untrusted, LLM-generated code behind an operating-system boundary.

The execution check (beyond WaveCoder) and the evaluation stage run code a language model wrote. It is
treated as hostile: usually harmless, sometimes broken in ways that loop forever, eat memory or write
files, and possibly written to escape. The boundary is **bubblewrap** (`bwrap`, Debian's `bubblewrap`,
the sandbox Flatpak uses), not Python:

1. **Namespaces**: new user, PID, network, mount, IPC, UTS and cgroup namespaces. Inside, the code runs
   as uid/gid 65534 of a user namespace with every capability dropped and no new privileges; it cannot
   create further user namespaces (`--disable-userns`). The network namespace has only its own
   loopback, so nothing outside can be reached; the PID namespace dies with the run.
2. **An unprivileged outer user**: when the worker runs as root, bubblewrap itself is started as a
   dedicated unprivileged uid (one per run, from `SANDBOX_UID_BASE`), so "root in the sandbox" is not
   root on the machine and the process limit binds (the kernel exempts root from it). As an ordinary
   user the sandbox runs as that user.
3. **seccomp** (built with libseccomp through `pyseccomp`): namespace, mount, ptrace, process-memory,
   pidfd, bpf, keyring, perf, module and similar calls fail with EPERM; `clone3` reports ENOSYS so the C
   library falls back to `clone`, whose namespace flags are refused.
4. **A minimal read-only view**: `/usr` (and the merged-usr links), a few `/etc` files the loader and
   toolchains need, the interpreter, a read-only `/dev` with the usual nodes, no `/proc` unless a
   runtime needs it (then its own PID namespace's). Never `/root`, the home folder, the project,
   `var/`, the virtualenv or the worker's environment (the environment is cleared).
5. **A private writable folder**: `/work`, a tmpfs capped at `SANDBOX_TMP_MB`, filled with the given
   files; `/tmp` points there. The root is read-only.
6. **Resource limits** (`prlimit`): CPU seconds, address space, file size, open files, processes, no
   core dumps. The parent kills the whole run after a wall-clock timeout and caps the output it reads.
7. For Python, a second layer inside (`curation/sandbox_guard.py`): an audit hook that turns the
   common mistakes into clear refusals. It is not the boundary.

Where bubblewrap is missing or cannot create its namespaces, nothing runs: results say "not run" with
the reason (`availability()`), never "passed".
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

# Output kept per stream; the rest is dropped (the child may print forever until the timeout).
OUTPUT_CAP_BYTES = 64 * 1024
MAX_FILE_MB = 16
MAX_OPEN_FILES = 64
MAX_PROCESSES = 64
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 512
DEFAULT_TMP_MB = 64
# Dedicated outer uids for runs started by root: far above any account, one per concurrent run.
DEFAULT_UID_BASE = 1_900_000_000
_UID_SLOTS = 100_000
WORK = "/work"
_GUARD = "/sandbox/guard.py"
_MAIN_FILE = "main.py"
_INNER_ID = "65534"
_PYTHON_MOUNT = "/python"
# Loader and toolchain configuration; nothing secret lives in these.
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "java-17-openjdk")
_REFUSED_SYSCALLS = (
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_open",
    "pidfd_getfd",
    "kcmp",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "open_by_handle_at",
    "name_to_handle_at",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "syslog",
    "quotactl",
    "personality",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "lookup_dcookie",
    "setdomainname",
    "sethostname",
)
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
_CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
_TIOCSTI = 0x5412
_uid_counter = itertools.count()


class SandboxUnavailable(RuntimeError):
    """The OS sandbox cannot run here; generated code must not run at all."""


@dataclass(frozen=True)
class SandboxResult:
    """What happened when the code ran. `reason` is empty when ok, else a short human explanation.

    `not_run` is true when nothing ran because the sandbox is unavailable; `reason` then says why.
    """

    ok: bool
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    reason: str
    not_run: bool = False
    run_id: str = ""


@dataclass(frozen=True)
class Limits:
    """The limits of one run."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    tmp_mb: int = DEFAULT_TMP_MB
    processes: int = MAX_PROCESSES
    open_files: int = MAX_OPEN_FILES
    file_mb: int = MAX_FILE_MB


def run_python(
    code: str,
    *,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    files: Mapping[str, str] | None = None,
    audit_hook: bool = True,
) -> SandboxResult:
    """Run `code` as `__main__` with the standard library only, in a fresh sandbox, and report how it ended.

    `files` are written next to it first (relative paths only), so tests can `import solution`.
    Defaults come from settings.SANDBOX_TIMEOUT_S and settings.SANDBOX_MEMORY_MB. `audit_hook=False`
    leaves out the in-process second layer (runners that install it themselves after a fork). Never
    raises for anything the code does; raises ValueError only for unsafe `files` names.
    """
    limits = _limits(timeout_s, memory_mb)
    files = dict(files or {})
    main_name = _MAIN_FILE if _MAIN_FILE not in files else "__sandbox_main__.py"
    _check_names([*files, main_name])
    files[main_name] = code
    main = f"{WORK}/{main_name}"
    python, binds = _python()
    # The guard is always there (read-only), so runners that fork can install it in their child.
    guard = {_GUARD: _guard_source()}
    if audit_hook:
        config = {"work": WORK, "deny_read": ["/proc", "/etc/shadow"]}
        argv = [python, "-I", "-S", "-u", _GUARD, json.dumps(config), main]
    else:
        argv = [python, "-I", "-S", "-u", main]
    return run_command(argv, files=files, limits=limits, ro_binds=binds, root_files=guard)


async def run_python_async(code: str, **kwargs) -> SandboxResult:
    """`run_python` in a worker thread, so an event loop running many LLM calls stays responsive."""
    return await asyncio.to_thread(run_python, code, **kwargs)


def run_command(
    argv: Sequence[str],
    *,
    files: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    ro_binds: Sequence[tuple[str, str]] = (),
    root_files: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    proc: bool = False,
) -> SandboxResult:
    """Run `argv` inside a fresh sandbox with `files` in its working folder `/work`.

    `ro_binds` are extra (host path, sandbox path) pairs mounted read-only, `root_files` files placed
    read-only outside `/work`, `env` extra environment variables, `proc` mounts the sandbox's own /proc
    (some runtimes need it). Returns a `not_run` result when the sandbox is unavailable.
    """
    limits = limits or Limits()
    files = dict(files or {})
    _check_names(files)
    unavailable = availability_problem()
    if unavailable:
        return _not_run(unavailable)
    run_id = uuid.uuid4().hex
    with _FileDescriptors() as fds:
        bwrap = _bwrap_argv(
            fds, files, root_files or {}, ro_binds, env or {}, limits, proc=proc, run_id=run_id
        )
        command = [*_prlimit_argv(limits), *bwrap, "--", *argv]
        return _run(command, fds=fds, timeout_s=limits.timeout_s, run_id=run_id)


def availability_problem() -> str:
    """Why generated code cannot run here ("" when the OS sandbox works); probed once per process."""
    return _probe()


def require_available() -> None:
    """Raise SandboxUnavailable (with the reason) unless the OS sandbox works here."""
    problem = availability_problem()
    if problem:
        raise SandboxUnavailable(problem)


def sandbox_layers() -> list[str]:
    """The isolation layers in use on this machine, in words (for logs, the dashboard and the docs)."""
    problem = availability_problem()
    if problem:
        return [f"unavailable: {problem}"]
    outer = "dedicated uid per run" if os.geteuid() == 0 else "the worker's own uid"
    return [
        f"bubblewrap {_bwrap_version()}",
        "user, pid, net, mount, ipc, uts, cgroup namespaces",
        "uid 65534 inside, no capabilities, no new privileges",
        f"outer user: {outer}",
        "seccomp filter",
        "read-only /usr, private size-capped /work",
        "rlimits (cpu, memory, files, processes)",
        "python audit hook (second layer)",
    ]


# --- building the command line ---------------------------------------------------------------------


def _limits(timeout_s: float | None, memory_mb: int | None) -> Limits:
    return Limits(
        timeout_s=float(
            timeout_s if timeout_s is not None else _setting("SANDBOX_TIMEOUT_S", DEFAULT_TIMEOUT_S)
        ),
        memory_mb=int(
            memory_mb if memory_mb is not None else _setting("SANDBOX_MEMORY_MB", DEFAULT_MEMORY_MB)
        ),
        tmp_mb=int(_setting("SANDBOX_TMP_MB", DEFAULT_TMP_MB)),
    )


def _setting(name: str, default):
    # The module also runs without Django (the escape suite's ordinary-user driver): defaults then.
    try:
        from django.conf import settings
    except ImportError:
        return default
    return getattr(settings, name, default) if settings.configured else default


@functools.cache
def _guard_source() -> str:
    return Path(__file__).with_name("sandbox_guard.py").read_text()


def _check_names(names) -> None:
    for name in names:
        path = PurePosixPath(name)
        if not name or path.is_absolute() or ".." in path.parts or "\x00" in name:
            raise ValueError(f"sandbox file name must be relative and inside the folder: {name!r}")


class _FileDescriptors:
    """Memory files handed to bubblewrap (file contents, the seccomp program); closed afterwards."""

    def __init__(self) -> None:
        # bubblewrap reports the sandbox's init process here, so the run can wait for its end.
        self.status_read, self.status_write = os.pipe()
        self.passed: list[int] = [self.status_write]

    def __enter__(self) -> _FileDescriptors:
        return self

    def __exit__(self, *exc) -> None:
        # Each descriptor is closed exactly once: a second close could hit a number another thread's
        # run has been given meanwhile (seen: "bwrap: Can't write data to file … Bad file descriptor").
        for fd in {*self.passed, self.status_read}:
            os.close(fd)
        self.passed.clear()

    def sandbox_pid(self) -> int | None:
        """The outer pid of the sandbox's init process, once bubblewrap has reported it."""
        if self.status_write in self.passed:
            self.passed.remove(self.status_write)
            os.close(self.status_write)  # our copy; bubblewrap's ends with it
        os.set_blocking(self.status_read, False)
        try:
            text = os.read(self.status_read, 4096).decode(errors="replace")
        except (BlockingIOError, OSError):
            return None
        for line in text.splitlines():
            try:
                pid = json.loads(line).get("child-pid")
            except (ValueError, AttributeError):
                continue
            if isinstance(pid, int):
                return pid
        return None

    def data(self, name: str, content: bytes) -> str:
        fd = os.memfd_create(name[-200:] or "file")  # close-on-exec; pass_fds hands it to bwrap
        self.passed.append(fd)
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
        return str(fd)


def _bwrap_argv(
    fds: _FileDescriptors,
    files: Mapping[str, str],
    root_files: Mapping[str, str],
    ro_binds: Sequence[tuple[str, str]],
    env: Mapping[str, str],
    limits: Limits,
    *,
    proc: bool,
    run_id: str,
) -> list[str]:
    argv = [_bwrap_path()]
    argv += ["--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    argv += ["--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session"]
    argv += ["--cap-drop", "ALL", "--uid", _INNER_ID, "--gid", _INNER_ID, "--hostname", "sandbox"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), str(host)]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), str(host)]
    for name in _ETC_FILES:
        if (Path("/etc") / name).exists():
            argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for host, inside in ro_binds:
        argv += ["--ro-bind", host, inside]
    for sub in ("site-packages", "dist-packages"):
        # The interpreter's own package folders stay out of sight (with -S they are off sys.path too).
        for host, inside in ro_binds:
            if inside == _PYTHON_MOUNT and (Path(host) / "lib" / _pyver() / sub).is_dir():
                argv += ["--tmpfs", f"{inside}/lib/{_pyver()}/{sub}"]
    argv += ["--dev", "/dev"]
    if proc:
        argv += ["--proc", "/proc"]
    argv += ["--size", str(limits.tmp_mb * 1024 * 1024), "--tmpfs", WORK, "--symlink", WORK, "/tmp"]
    made = {WORK}
    for name, content in sorted(files.items()):
        target = f"{WORK}/{name}"
        argv += _parents(target, made)
        argv += ["--file", fds.data(name, content.encode("utf-8", "surrogateescape")), target]
    for target, content in sorted(root_files.items()):
        argv += _parents(target, made)
        argv += ["--ro-bind-data", fds.data(target, content.encode()), target]
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORK]
    argv += ["--seccomp", fds.data("seccomp", _seccomp_program())]
    argv += ["--json-status-fd", str(fds.status_write)]
    base_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": WORK, "TMPDIR": WORK}
    base_env.update(env)
    # The run id rides in the environment, so a test can tell this run's processes apart.
    base_env["WAVECODER_SANDBOX_RUN"] = run_id
    argv.append("--clearenv")
    for key, value in base_env.items():
        argv += ["--setenv", key, value]
    return argv


def _parents(target: str, made: set[str]) -> list[str]:
    out = []
    for parent in reversed(PurePosixPath(target).parents):
        text = str(parent)
        if text in ("/", *made) or text.count("/") < 1:
            continue
        made.add(text)
        out += ["--dir", text]
    return out


def _prlimit_argv(limits: Limits) -> list[str]:
    nproc = limits.processes
    if os.geteuid() != 0:
        # The limit counts every process of the outer user: leave the worker's own processes room.
        nproc += _own_process_count()
    # CPU seconds a little above the wall timeout: the wall clock is the main guard.
    return [
        _which("prlimit"),
        f"--cpu={int(limits.timeout_s) + 1}",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--fsize={limits.file_mb * 1024 * 1024}",
        f"--nofile={limits.open_files}",
        f"--nproc={nproc}",
        "--core=0",
        "--",
    ]


def _own_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                count += entry.stat().st_uid == uid
            except OSError:
                pass
    return count


def _outer_user() -> dict:
    """Popen arguments that start bubblewrap as a dedicated unprivileged uid when we are root."""
    if os.geteuid() != 0:
        return {}
    base = int(_setting("SANDBOX_UID_BASE", DEFAULT_UID_BASE))
    uid = base + (os.getpid() * 1000 + next(_uid_counter)) % _UID_SLOTS
    return {"user": uid, "group": uid, "extra_groups": []}


@functools.cache
def _python() -> tuple[str, list[tuple[str, str]]]:
    """The interpreter path inside the sandbox, and the read-only binds it needs.

    The configured SANDBOX_PYTHON, else this interpreter's base installation when the sandbox user
    can read it, else the system's python3 of the same version. An installation outside /usr is
    mounted at /python, never at its own path (which could be under /root or a home folder).
    """
    configured = _setting("SANDBOX_PYTHON", "")
    candidates = [configured] if configured else []
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates += [str(base), f"/usr/bin/{_pyver()}", "/usr/bin/python3"]
    for candidate in candidates:
        path = Path(candidate).resolve()
        if not path.is_file() or (os.geteuid() == 0 and not _others_can_run(path)):
            continue
        if path.is_relative_to("/usr"):
            return str(path), []
        prefix = path.parent.parent
        return f"{_PYTHON_MOUNT}/bin/{path.name}", [(str(prefix), _PYTHON_MOUNT)]
    raise SandboxUnavailable("no Python interpreter the sandbox user can run (set WAVECODER_SANDBOX_PYTHON)")


def _others_can_run(path: Path) -> bool:
    for folder in path.parents:
        if not folder.stat().st_mode & 0o001:
            return False
    return bool(path.stat().st_mode & 0o005 == 0o005)


def _pyver() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


@functools.cache
def _seccomp_program() -> bytes:
    import pyseccomp as seccomp

    rules = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in _REFUSED_SYSCALLS:
        try:
            rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (ValueError, OSError):
            pass  # not a system call on this architecture
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # One rule per namespace flag: clone with any of them set is refused.
    for flag in _CLONE_NAMESPACE_FLAGS:
        rules.add_rule(seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # Pushing characters into the terminal's input queue is a classic way out of a sandbox.
    rules.add_rule(
        seccomp.ERRNO(errno.EPERM), "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, _TIOCSTI)
    )
    with tempfile.TemporaryFile() as out:
        rules.export_bpf(out)
        out.seek(0)
        return out.read()


def _which(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if found is None:
        raise SandboxUnavailable(f"{name} not found")
    return found


def _bwrap_path() -> str:
    configured = _setting("SANDBOX_BWRAP", "")
    return configured or _which("bwrap")


@functools.cache
def _bwrap_version() -> str:
    try:
        out = subprocess.run([_bwrap_path(), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired, SandboxUnavailable):
        return "?"
    return out.stdout.strip().removeprefix("bubblewrap ")


@functools.cache
def _probe() -> str:
    try:
        if shutil.which(_bwrap_path()) is None:
            return "bubblewrap (bwrap) is not installed: install Debian's `bubblewrap` package"
        _which("prlimit")
        _seccomp_program()
        python, binds = _python()
    except SandboxUnavailable as exc:
        if "bwrap" in str(exc):
            return "bubblewrap (bwrap) is not installed: install Debian's `bubblewrap` package"
        return str(exc)
    except (ImportError, OSError, RuntimeError) as exc:
        return f"the seccomp filter cannot be built (libseccomp): {exc}"
    run_id = uuid.uuid4().hex
    with _FileDescriptors() as fds:
        bwrap = _bwrap_argv(fds, {}, {}, binds, {}, Limits(timeout_s=20), proc=False, run_id=run_id)
        command = [
            *_prlimit_argv(Limits(timeout_s=20)),
            *bwrap,
            "--",
            python,
            "-I",
            "-S",
            "-c",
            "print('ok')",
        ]
        result = _run(command, fds=fds, timeout_s=20, run_id=run_id)
    if result.stdout.strip() == "ok":
        return ""
    detail = (result.stderr.strip().splitlines() or [result.reason or "no output"])[-1]
    return f"bubblewrap cannot create its sandbox here: {detail[:300]}"


def _not_run(problem: str) -> SandboxResult:
    return SandboxResult(
        ok=False,
        returncode=None,
        stdout="",
        stderr="",
        timed_out=False,
        duration_s=0.0,
        reason=f"not run: {problem}",
        not_run=True,
    )


# --- running ---------------------------------------------------------------------------------------


def _run(argv: list[str], *, fds: _FileDescriptors, timeout_s: float, run_id: str) -> SandboxResult:
    # Output goes to anonymous files, not pipes: no reader threads, no deadlock, and the child's
    # RLIMIT_FSIZE bounds them too. Only the first OUTPUT_CAP_BYTES are read back.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
            start_new_session=True,
            pass_fds=tuple(fds.passed),
            **_outer_user(),
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # bubblewrap's own processes are in this group; killing them ends the PID namespace
            # (--die-with-parent) and with it every process the code left behind.
            _kill_group(proc.pid)
            proc.wait()
            _wait_for_namespace_end(fds.sandbox_pid())
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
        run_id=run_id,
    )


def _wait_for_namespace_end(pid: int | None, limit_s: float = 5.0) -> None:
    # The kernel kills a PID namespace's processes when its init dies, but not instantly: wait, so
    # that no process of this run outlives the call.
    if pid is None:
        return
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return
        if state in ("Z", "X"):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.005)


def _kill_group(pgid: int) -> None:
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
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL, 128 + signal.SIGKILL) and not stderr.strip():
        return "CPU time limit" if returncode == -signal.SIGXCPU else "killed (CPU or memory limit)"
    if returncode < 0:
        return f"killed by signal {signal.Signals(-returncode).name}"
    if returncode > 128 and returncode - 128 in signal.valid_signals() and not stderr.strip():
        # bubblewrap's init reports a signalled child as 128 + the signal's number.
        return f"killed by signal {signal.Signals(returncode - 128).name}"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if any("MemoryError" in line for line in lines[-3:]):
        return "memory limit"
    if any("File too large" in line for line in lines[-3:]):
        return "file size limit"
    blocked = [line for line in lines if "sandbox:" in line]
    if blocked:
        return blocked[-1].split("sandbox:", 1)[1].strip()
    return lines[-1][:300] if lines else f"exit code {returncode}"
