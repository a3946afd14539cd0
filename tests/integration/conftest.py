"""A real Celery worker process, on the test database and the configured broker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(transactional_db, tmp_path):
    """Start `celery worker` on all queues against the test database; stop it after the test.

    Yields a function that starts a (new) worker, so a test can kill one and start another.
    """
    from wavecoder_site.celery import app

    app.control.purge()
    procs: list[subprocess.Popen] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        overrides = env or {}
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "WAVECODER_VAR_DIR": str(settings.VAR_DIR),
            "HF_HUB_OFFLINE": "1",
            **overrides,
        }
        log = open(tmp_path / f"worker-{len(procs)}.log", "w")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "wavecoder_site",
                "worker",
                "-Q",
                "default,llm,gpu",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                *extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for(predicate, timeout: float = 120, interval: float = 0.3, logs: Path | None = None):
    """Poll until predicate() is truthy; on timeout fail with the worker logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = ""
    if logs:
        detail = "\n".join(p.read_text()[-3000:] for p in sorted(logs.glob("worker-*.log")))
    pytest.fail(f"timed out after {timeout}s\n{detail}")
