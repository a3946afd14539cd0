"""The sandbox for generated code: results of normal code, and harmless failure of hostile code."""

import asyncio
import os
import socket
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from curation import sandbox
from curation.sandbox import MAX_FILE_MB, OUTPUT_CAP_BYTES, run_python, run_python_async


def _processes_of_run(run_id: str) -> list[int]:
    """Processes on this machine that belong to one sandbox run (its id is in their environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if run_id.encode() in (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass  # the process ended meanwhile
    return found


def test_normal_code_passes_and_returns_stdout():
    result = run_python("print(sum(range(10)))")
    assert result.ok and result.returncode == 0 and not result.timed_out
    assert result.stdout == "45\n" and result.reason == ""


def test_files_sit_beside_the_code_and_can_be_imported():
    files = {"solution.py": "def double(x):\n    return 2 * x\n", "data/input.txt": "21"}
    code = "from solution import double\nassert double(int(open('data/input.txt').read())) == 42\nprint('ok')"
    result = run_python(code, files=files)
    assert result.ok, result.stderr
    assert result.stdout == "ok\n"


@pytest.mark.parametrize("name", ["../escape.py", "/tmp/absolute.py"])
def test_file_names_must_stay_inside(name):
    with pytest.raises(ValueError):
        run_python("pass", files={name: "x"})


def test_assert_failure_fails_with_the_assertion_in_stderr():
    result = run_python("def add(a, b):\n    return a - b\n\nassert add(2, 2) == 4, 'add is broken'\n")
    assert not result.ok and result.returncode == 1 and not result.timed_out
    assert "AssertionError: add is broken" in result.stderr
    assert "assert add(2, 2) == 4" in result.stderr  # the source line, for a reviewer
    assert result.reason == "AssertionError: add is broken"


def test_infinite_loop_times_out():
    result = run_python("while True:\n    pass\n", timeout_s=1)
    assert result.timed_out and not result.ok and result.returncode is None
    assert 1 <= result.duration_s < 3
    assert result.reason == "timeout after 1 s"
    assert result.run_id and _processes_of_run(result.run_id) == []


def test_huge_allocation_fails_harmlessly():
    result = run_python("data = bytearray(10 * 1024**3)\nprint('allocated')", memory_mb=256)
    assert not result.ok and "allocated" not in result.stdout
    assert result.reason == "memory limit"


def test_fork_bomb_fails_quickly():
    result = run_python("import os\nwhile True:\n    os.fork()\n", timeout_s=5)
    assert not result.ok and not result.timed_out and result.duration_s < 3
    assert "os.fork is blocked" in result.reason
    assert result.run_id and _processes_of_run(result.run_id) == []


def test_stubborn_fork_bomb_leaves_no_processes():
    code = textwrap.dedent(
        """
        import multiprocessing, os, subprocess, sys
        spawners = [
            os.fork,
            lambda: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]),
            lambda: os.system("sleep 60 &"),
            lambda: os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], {}),
            lambda: multiprocessing.Process(target=print).start(),
            lambda: os.execv(sys.executable, [sys.executable, "-c", "pass"]),
        ]
        for spawn in spawners:
            try:
                spawn()
                print("spawned")
            except Exception as exc:
                print(type(exc).__name__)
        while True:  # keep trying until the timeout
            try:
                os.fork()
            except Exception:
                pass
        """
    )
    result = run_python(code, timeout_s=1.5)
    assert result.timed_out
    assert result.stdout.split() == ["PermissionError"] * 6
    assert result.run_id and _processes_of_run(result.run_id) == []


@pytest.mark.parametrize("where", ["tmp", "project", "symlink"])
def test_writing_outside_the_temp_dir_fails(where):
    name = f"sandbox-escape-{uuid.uuid4().hex}"
    target = Path(tempfile.gettempdir()) / name if where != "project" else settings.BASE_DIR / name
    if where == "symlink":
        code = f"import os\nos.symlink({str(target)!r}, 'link')\nopen('link', 'w').write('pwned')\n"
    else:
        code = f"open({str(target)!r}, 'w').write('pwned')\n"
    try:
        result = run_python(code)
        # /tmp inside is the run's own private folder: the write may succeed there, never on the host.
        assert not target.exists()
        if where == "project":
            # The audit hook refuses it (or lets it through to /work, the private folder, when the
            # checkout lives under /work); without the hook the mount namespace alone must refuse it.
            assert not result.ok
            bare = run_python(code, audit_hook=False)
            assert not target.exists()
            assert not bare.ok and "No such file or directory" in bare.reason
    finally:
        target.unlink(missing_ok=True)


def test_deleting_outside_the_temp_dir_fails(tmp_path):
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    result = run_python(f"import os\nos.remove({str(victim)!r})\n")
    assert not result.ok and victim.read_text() == "precious"


def test_network_is_unreachable():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        code = (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('connected')"
        )
        result = run_python(code)
        assert not result.ok and "connected" not in result.stdout
        with pytest.raises(TimeoutError):
            listener.accept()  # nobody came
    raw = run_python("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM)\n")
    assert not raw.ok and "socket" in raw.reason


def test_secrets_stay_out_of_reach(monkeypatch):
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("WAVECODER_FAKE_SECRET", secret)
    probes = {
        "environment": "import os\nprint(os.environ.get('WAVECODER_FAKE_SECRET'))\nprint(dict(os.environ))",
        "parent environ": f"print(open('/proc/{os.getpid()}/environ').read())",
        "init environ": "print(open('/proc/1/environ').read())",
        "self environ": "print(open('/proc/self/environ').read())",
        "settings file": f"print(open({str(settings.BASE_DIR / 'wavecoder_site' / 'settings.py')!r}).read())",
        "project listing": f"import os\nprint(os.listdir({str(settings.BASE_DIR)!r}))",
        "secret key": f"print(open({str(settings.VAR_DIR / 'secret_key')!r}).read())",
    }
    results = {name: run_python(code) for name, code in probes.items()}
    for name, result in results.items():
        assert secret not in result.stdout + result.stderr, name
        assert settings.SECRET_KEY not in result.stdout + result.stderr, name
        assert "DJANGO_SETTINGS_MODULE" not in result.stdout, name
    assert results["environment"].ok and results["environment"].stdout.startswith("None\n")
    for name in probes.keys() - {"environment"}:
        assert not results[name].ok, name


def test_huge_file_write_hits_the_file_size_limit():
    code = f"with open('big.bin', 'wb') as f:\n    f.write(b'0' * {(MAX_FILE_MB + 1) * 1024 * 1024})\n"
    result = run_python(code)
    assert not result.ok and result.reason == "file size limit"


def test_output_is_capped():
    result = run_python(f"print('x' * {4 * OUTPUT_CAP_BYTES})")
    assert result.ok
    assert len(result.stdout) < OUTPUT_CAP_BYTES + 100 and "truncated" in result.stdout


def test_work_folder_is_private_and_leaves_nothing_on_the_host():
    before = set(os.listdir(tempfile.gettempdir()))
    code = "import os\nopen('scratch.txt', 'w').write('x')\nos.mkdir('sub')\n"
    code += "print(os.getcwd(), sorted(os.listdir('.')))"
    result = run_python(code)
    assert result.ok, result.stderr
    assert result.stdout.split(" ", 1)[0] == sandbox.WORK
    assert "scratch.txt" in result.stdout
    assert not {name for name in set(os.listdir(tempfile.gettempdir())) - before if "sandbox" in name}


def test_async_variant_runs_in_parallel():
    async def run():
        return await asyncio.gather(*(run_python_async(f"print({i})") for i in range(4)))

    assert [r.stdout for r in asyncio.run(run())] == ["0\n", "1\n", "2\n", "3\n"]


def test_concurrent_runs_keep_their_own_files():
    """Many runs at once from threads: each sees its own files (descriptors are never closed twice)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int):
        return run_python("print(open('data.txt').read())", files={"data.txt": f"run {i}"}, timeout_s=20)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(48)))
    assert [r.stdout for r in results] == [f"run {i}\n" for i in range(48)], [
        r.reason for r in results if not r.ok
    ]
