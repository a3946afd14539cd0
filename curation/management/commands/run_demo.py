"""`python manage.py run_demo`: the offline LLM server, a Celery worker (all queues) and the web server,
started and stopped together."""

import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from curation import llm


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Command(BaseCommand):
    help = "Start the offline LLM server, a Celery worker and the web server on 127.0.0.1:8000 until Ctrl+C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, **opts) -> None:
        procs: list[subprocess.Popen] = []
        env = dict(os.environ)
        if not settings.OPENAI_BASE_URL and llm.llama_server_available():
            port = _free_port()
            log = settings.VAR_DIR / "llama-server.log"
            procs.append(llm.start_llama_server(port, log_path=log))
            base_url = f"http://127.0.0.1:{port}/v1"
            if llm.wait_until_ready(base_url, timeout=120):
                env["OPENAI_BASE_URL"] = base_url
                self.stdout.write(f"Offline LLM (SmolLM2-135M, llama.cpp) at {base_url}; log in {log}")
            else:
                self.stderr.write(f"The llama.cpp server did not start (see {log}); using transformers.")
        elif settings.OPENAI_BASE_URL:
            self.stdout.write(f"LLM endpoint: {settings.OPENAI_BASE_URL}")
        else:
            reason = llm.llama_unavailable_reason()
            self.stdout.write(
                "Offline LLM: SmolLM2-135M in-process with transformers" + (f" ({reason})" if reason else "")
            )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "wavecoder_site",
                    "worker",
                    "-Q",
                    "default,llm,gpu",
                    "--concurrency",
                    "2",
                    "--loglevel",
                    "INFO",
                ],
                env=env,
            )
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", f"{opts['host']}:{opts['port']}"],
                env=env,
            )
        )
        self.stdout.write(self.style.SUCCESS(f"WaveCoder Studio at http://{opts['host']}:{opts['port']}/"))
        try:
            while all(proc.poll() is None for proc in procs):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
