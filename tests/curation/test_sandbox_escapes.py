"""Escape attempts against the OS sandbox, run as the worker's user (root in CI) and as an ordinary user.

Each payload is what hostile generated code would try. Most run with the Python audit hook left out
(`audit_hook=False`), because the hook is only a second layer: the operating system must hold alone.
The audit's own exploits run with the hook in place, as an attacker would meet it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings

from curation import sandbox
from curation.generation import execute_instance
from training.evaluation import evaluate_samples

ESCAPED = "ESCAPED"
ORDINARY_UID = 65534  # nobody
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


def _secret_values() -> list[str]:
    values = [settings.SECRET_KEY]
    key_file = Path(settings.VAR_DIR) / "secret_key"
    if key_file.exists():
        values.append(key_file.read_text().strip())
    return [v for v in values if v]


def _payloads(listener_port: int, worker_pid: int, canary: Path) -> dict[str, dict]:
    """name → {code, audit_hook}; a payload prints ESCAPED (or a secret) only if it got out."""
    project, var = str(settings.BASE_DIR), str(settings.VAR_DIR)
    # What a shell inside tries; it prints the marker only for what succeeded.
    shell = (
        f"echo shell runs as $(id -u); cat /proc/{worker_pid}/environ && echo {ESCAPED}-environ; "
        f"cat {var}/secret_key && echo {ESCAPED}-secret; "
        f"cat {project}/wavecoder_site/settings.py && echo {ESCAPED}-settings; "
        f"touch {canary} && echo {ESCAPED}-write; ls /root && echo {ESCAPED}-root-home; "
        f"[ $(id -u) = 0 ] && echo {ESCAPED}-uid0; echo shell done"
    )
    payloads = {
        # The audit's critical finding: a fresh _posixsubprocess under a dotted name, then fork_exec.
        "posixsubprocess reload": (
            True,
            """
            import _imp, importlib.machinery, os, sys
            loaded = sys.modules.get("_posixsubprocess")
            origin = getattr(getattr(loaded, "__spec__", None), "origin", None) or ""
            try:
                if origin.endswith(".so"):  # a fresh copy of the extension under another name
                    spec = importlib.machinery.ModuleSpec("x._posixsubprocess", None, origin=origin)
                    mod = _imp.create_dynamic(spec)
                else:  # built into the interpreter: a fresh instance of the built-in module
                    spec = importlib.machinery.ModuleSpec("_posixsubprocess", None, origin="built-in")
                    mod = _imp.create_builtin(spec)
            except Exception as exc:
                print("reload refused:", type(exc).__name__, exc)
                import _posixsubprocess as mod
            script = SHELL
            r, w = os.pipe()
            try:
                pid = mod.fork_exec([b"/bin/sh", b"-c", script.encode()], [b"/bin/sh"], True, (w,),
                                    None, None, -1, -1, -1, -1, -1, -1, r, w, True, False, -1,
                                    None, None, None, -1, None, False)
                os.waitpid(pid, 0)
            except Exception as exc:
                print("refused:", type(exc).__name__, exc)
            """,
        ),
        # Without the hook, a shell runs inside: what it can reach is the boundary.
        "shell inside": (
            False,
            """
            import subprocess
            script = SHELL
            done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
            print(done.stdout, done.stderr)
            """,
        ),
        # The audit's high finding: replacing builtins to switch the hook's path checks off.
        "hook disabled via builtins": (
            True,
            f"""
            import builtins
            builtins.any = lambda *a, **k: False
            builtins.isinstance = lambda *a, **k: False
            for path in ({var + "/secret_key"!r}, {project + "/wavecoder_site/settings.py"!r}):
                try:
                    print(open(path).read())
                except OSError as exc:
                    print("refused", exc)
            try:
                open({str(canary)!r}, "w").write("{ESCAPED}")
            except OSError as exc:
                print("refused", exc)
            """,
        ),
        "worker environment": (
            False,
            f"""
            import os
            print(dict(os.environ))
            for path in ("/proc/{worker_pid}/environ", "/proc/1/environ", "/proc/self/environ"):
                try:
                    print(open(path).read())
                except OSError as exc:
                    print("refused", exc)
            """,
        ),
        "project, var and home are out of sight": (
            False,
            f"""
            import os
            for path in ({project!r}, {var!r}, "/root", os.path.expanduser("~root"), {sys.prefix!r}, "/home"):
                try:
                    print("{ESCAPED}" if os.listdir(path) else "empty", path)
                except OSError as exc:
                    print("refused", path, exc.errno)
            """,
        ),
        "write into the project": (
            False,
            f"""
            for path in ({str(canary)!r}, {project + "/" + canary.name!r}, {var + "/" + canary.name!r}):
                try:
                    open(path, "w").write("{ESCAPED}")
                except OSError as exc:
                    print("refused", exc.errno)
            """,
        ),
        "network": (
            False,
            f"""
            import socket
            targets = [("127.0.0.1", {listener_port}), ("127.0.0.1", 6379), ("127.0.0.1", 5432)]
            targets.append(("10.0.0.1", 80))
            for host, port in targets:
                s = socket.socket()
                s.settimeout(1)
                try:
                    s.connect((host, port))
                    print("{ESCAPED} connected", host, port)
                except OSError as exc:
                    print("refused", port, exc.errno)
            """,
        ),
        "namespaces, mount, ptrace": (
            False,
            f"""
            import ctypes, ctypes.util, os
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            calls = {{
                "unshare(NEWUSER)": lambda: libc.unshare(0x10000000),
                "unshare(NEWNS)": lambda: libc.unshare(0x00020000),
                "unshare(NEWNET)": lambda: libc.unshare(0x40000000),
                "mount": lambda: libc.mount(b"none", b"/work", b"tmpfs", 0, None),
                "ptrace attach 1": lambda: libc.ptrace(16, 1, None, None),
                "ptrace traceme": lambda: libc.ptrace(0, 0, None, None),
                "setuid 0": lambda: libc.setuid(0),
                "chroot": lambda: libc.chroot(b"/work"),
                "pidfd_open 1": lambda: libc.syscall(434, 1, 0),
                "bpf": lambda: libc.syscall(321, 0, None, 0),
                "kill worker": lambda: libc.kill({worker_pid}, 9),
            }}
            for name, call in calls.items():
                rc = call()
                print(name, rc, ctypes.get_errno())
                if rc == 0:
                    print("{ESCAPED}", name)
            # No capabilities, not even in the sandbox's own user namespace (21 = CAP_SYS_ADMIN).
            print("cap_sys_admin in bounding set:", libc.prctl(23, 21, 0, 0, 0))
            if os.getuid() == 0:
                print("{ESCAPED} uid 0")
            print("uid", os.getuid())
            """,
        ),
        "fork bomb": (
            False,
            """
            import os
            n = 0
            try:
                while True:
                    if os.fork() == 0:
                        import time
                        time.sleep(30)
                        os._exit(0)
                    n += 1
            except OSError as exc:
                print("stopped after", n, exc.errno)
            """,
        ),
        "fill the disk": (
            False,
            f"""
            try:
                with open("big", "wb") as f:
                    for _ in range({2 * sandbox.DEFAULT_TMP_MB}):
                        f.write(b"0" * 1024 * 1024)
                print("{ESCAPED} wrote", {2 * sandbox.DEFAULT_TMP_MB}, "MiB")
            except OSError as exc:
                print("refused", exc.errno)
            """,
        ),
        "memory": (
            False,
            f"""
            try:
                block = bytearray({4 * sandbox.DEFAULT_MEMORY_MB} * 1024 * 1024)
                print("{ESCAPED} allocated")
            except MemoryError:
                print("refused")
            """,
        ),
        "root is read-only": (
            False,
            f"""
            for path in ("/evil", "/usr/evil", "/dev/evil", "/etc/evil"):
                try:
                    open(path, "w").write("x")
                    print("{ESCAPED}", path)
                except OSError as exc:
                    print("refused", path, exc.errno)
            """,
        ),
    }
    return {
        name: {"audit_hook": hook, "code": f"SHELL = {shell!r}\n" + textwrap.dedent(code)}
        for name, (hook, code) in payloads.items()
    }


@pytest.fixture
def listener():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.settimeout(0.2)
        yield sock


def _run_as_current_user(payloads: dict[str, dict]) -> dict[str, dict]:
    return {
        name: dataclasses.asdict(sandbox.run_python(p["code"], audit_hook=p["audit_hook"], timeout_s=8))
        for name, p in payloads.items()
    }


def _run_as_ordinary_user(payloads: dict[str, dict]) -> dict[str, dict]:
    if os.geteuid() != 0:
        return _run_as_current_user(payloads)  # we are an ordinary user already
    if not SYSTEM_PYTHON.exists():
        pytest.fail(f"{SYSTEM_PYTHON} is needed to run the sandbox as an ordinary user")
    import pyseccomp

    # The sandbox module, its guard and pyseccomp, copied where the ordinary user can read them (the
    # checkout or the virtualenv may sit in a private folder such as /root).
    root = Path(tempfile.mkdtemp(prefix="sandbox-driver-"))
    try:
        (root / "curation").mkdir()
        (root / "curation" / "__init__.py").write_text("")
        for name in ("sandbox.py", "sandbox_guard.py"):
            shutil.copy(Path(sandbox.__file__).with_name(name), root / "curation" / name)
        shutil.copy(pyseccomp.__file__, root / "pyseccomp.py")
        shutil.copy(Path(__file__).with_name("sandbox_driver.py"), root / "driver.py")
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        items = [
            {"code": p["code"], "audit_hook": p["audit_hook"], "timeout_s": 8} for p in payloads.values()
        ]
        done = subprocess.run(
            [str(SYSTEM_PYTHON), "-I", str(root / "driver.py")],
            input=json.dumps(items),
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "WAVECODER_PROJECT": str(root)},
            cwd="/",
            user=ORDINARY_UID,
            group=ORDINARY_UID,
            extra_groups=[],
            timeout=300,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["uid"] == ORDINARY_UID and report["problem"] == "", report["problem"]
    return dict(zip(payloads, report["results"], strict=True))


RUNNERS = {"worker's user": _run_as_current_user, "ordinary user": _run_as_ordinary_user}


@pytest.mark.parametrize("runner", RUNNERS)
def test_escape_attempts_fail(runner, listener, tmp_path):
    if runner == "worker's user" and os.geteuid() != 0:
        pytest.skip("the root leg needs root (CI runs it)")
    assert sandbox.availability_problem() == ""
    canary = Path(settings.BASE_DIR) / f"sandbox-canary-{uuid.uuid4().hex}"
    payloads = _payloads(listener.getsockname()[1], os.getpid(), canary)
    try:
        results = RUNNERS[runner](payloads)
    finally:
        leaked = canary.exists()
        canary.unlink(missing_ok=True)
    assert not leaked, "a payload wrote into the project folder"
    secrets = _secret_values()
    for name, result in results.items():
        output = result["stdout"] + result["stderr"]
        assert not result["not_run"], (name, result["reason"])
        assert ESCAPED not in output, (name, output[-2000:])
        for secret in secrets:
            assert secret not in output, name
        assert "DJANGO_SETTINGS_MODULE" not in output and "DATABASE_URL" not in output, name
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody came

    namespaces = results["namespaces, mount, ptrace"]["stdout"]
    assert "uid 65534" in namespaces and "cap_sys_admin in bounding set: 0" in namespaces, namespaces
    for line in namespaces.splitlines():
        if line.startswith(("unshare", "mount", "ptrace", "setuid", "chroot", "pidfd", "bpf", "kill")):
            assert line.split()[-2] == "-1", line
    bomb = results["fork bomb"]
    assert "stopped after" in bomb["stdout"] or bomb["timed_out"], bomb
    assert "refused" in results["fill the disk"]["stdout"]
    assert "refused" in results["memory"]["stdout"] or not results["memory"]["ok"]
    assert results["network"]["stdout"].count("refused") == 4


def test_fork_bomb_is_bounded_and_the_worker_still_forks():
    result = sandbox.run_python(
        "import os\nn = 0\ntry:\n    while True:\n        os.fork()\n        n += 1\n"
        "except OSError:\n    print('bounded')\n",
        audit_hook=False,
        timeout_s=5,
    )
    assert not result.timed_out or result.duration_s < 6
    assert subprocess.run(["true"]).returncode == 0  # the machine is not exhausted


def test_missing_bubblewrap_runs_nothing(monkeypatch, tmp_path):
    canary = tmp_path / "ran"
    monkeypatch.setattr(settings, "SANDBOX_BWRAP", str(tmp_path / "no-bwrap"), raising=False)
    sandbox._probe.cache_clear()
    try:
        result = sandbox.run_python(f"open({str(canary)!r}, 'w').write('x')")
        assert result.not_run and not result.ok
        assert result.reason.startswith("not run: bubblewrap (bwrap) is not installed")
        assert not canary.exists()
        with pytest.raises(sandbox.SandboxUnavailable, match="bubblewrap"):
            sandbox.require_available()
        # The pipeline records it as "not run" (not a failure), and evaluations refuse to start.
        row = SimpleNamespace(
            task=SimpleNamespace(slug="generation"),
            language="python",
            target_language="",
            output=f"open({str(canary)!r}, 'w').write('x')",
            tests="assert True",
        )
        status, detail = execute_instance(row)
        assert status == "not run" and "bubblewrap" in detail
        with pytest.raises(sandbox.SandboxUnavailable):
            evaluate_samples([{"task_id": "HumanEval/0", "completion": "    return True\n"}])
        assert not canary.exists()
        assert sandbox.sandbox_layers()[0].startswith("unavailable")
    finally:
        monkeypatch.undo()
        sandbox._probe.cache_clear()
    assert sandbox.availability_problem() == ""


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")
def test_layers_name_the_boundary():
    layers = sandbox.sandbox_layers()
    assert layers[0].startswith("bubblewrap ")
    assert "seccomp filter" in layers
