"""`python manage.py run_demo`: the offline LLM server, a Celery worker (all queues) and the web server,
started and stopped together."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from curation import llm


def _offline_models_to_serve() -> list[str]:
    """The Generator's and Discriminator's models (as they resolve here) and any listed in settings."""
    from curation import offline_models

    names = [
        llm.servable_model(settings.LLM_GENERATOR_MODEL),
        llm.servable_model(settings.LLM_DISCRIMINATOR_MODEL),
    ]
    names += settings.LLM_OFFLINE_SERVE
    return [n for n in dict.fromkeys(names) if n in offline_models.MODELS]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Command(BaseCommand):
    help = "Start the offline LLM server, a Celery worker and the web server on 127.0.0.1:8000 until Ctrl+C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")
        parser.add_argument(
            "--engine-marker",
            default="",
            help="A file that appears when a background build of the llama.cpp engine has finished",
        )
        parser.add_argument("--engine-log", default="", help="That build's log, named on the dashboard")

    def _serve_offline_models(self, procs: list[subprocess.Popen]) -> dict[str, str]:
        """One llama.cpp server per offline model in use; returns model name → base URL of those up."""
        _, _, reason = llm.offline_teacher()
        if reason:
            self.stderr.write(f"Offline teacher unavailable: {reason}. SmolLM2-135M stands in.")
        endpoints = {}
        for name in _offline_models_to_serve():
            port = _free_port()
            log = settings.VAR_DIR / f"llama-server-{name}.log"
            try:
                procs.append(llm.start_llama_server(port, model=name, log_path=log))
            except llm.LLMError as exc:
                self.stderr.write(f"{name} not served: {exc}")
                continue
            base_url = f"http://127.0.0.1:{port}/v1"
            if llm.wait_until_ready(base_url, timeout=180):
                endpoints[name] = base_url
                llm.write_offline_endpoints(endpoints)  # new jobs of the web and the worker use it now
                self.stdout.write(f"Offline LLM {name} (llama.cpp) at {base_url}; log in {log}")
            else:
                self.stderr.write(f"The llama.cpp server for {name} did not start (see {log}).")
        llm.write_engine_state(
            "ready" if endpoints else "unavailable", "" if endpoints else "no server started"
        )
        return endpoints

    def handle(self, *args, **opts) -> None:
        procs: list[subprocess.Popen] = []
        env = dict(os.environ)
        llm.write_offline_endpoints({})  # a previous run's servers are gone
        # The web server and the worker first: the demo's jobs are already queued for the worker.
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
                    "WARNING",
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
        marker = Path(opts["engine_marker"]) if opts["engine_marker"] else None
        pending = False
        if settings.OPENAI_BASE_URL:
            self.stdout.write(f"LLM endpoint: {settings.OPENAI_BASE_URL}")
        elif llm.llama_server_available():
            self._serve_offline_models(procs)
        elif marker is not None and not marker.exists():
            pending = True
            llm.write_engine_state("building", opts["engine_log"])
            self.stdout.write(
                "The llama.cpp engine is still building; the offline LLM runs in-process (SmolLM2) until "
                f"it is ready (build log: {opts['engine_log']})"
            )
        else:
            reason = llm.llama_unavailable_reason()
            llm.write_engine_state("unavailable", reason)
            self.stdout.write(
                "Offline LLM: SmolLM2-135M in-process with transformers" + (f" ({reason})" if reason else "")
            )
        try:
            while all(proc.poll() is None for proc in procs):
                time.sleep(0.5)
                if pending and marker.exists():
                    pending = False
                    self._engine_ready(procs)
        except KeyboardInterrupt:
            pass
        finally:
            llm.write_offline_endpoints({})
            for proc in reversed(procs):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    def _engine_ready(self, procs: list[subprocess.Popen]) -> None:
        """The background build finished: serve the offline models if the engine runs, else say why."""
        works, why = llm.llama_engine_check()
        if not works:
            llm.write_engine_state("unavailable", why)
            self.stderr.write(f"The llama.cpp engine does not run: {why}; the offline LLM stays in-process.")
            return
        self.stdout.write("The llama.cpp engine is ready; starting the offline models' servers.")
        self._serve_offline_models(procs)
