"""`python manage.py run_demo`: a Celery worker (all queues) and the web server, stopped together."""

import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start a Celery worker and the web server on 127.0.0.1:8000 until Ctrl+C."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", default="8000")

    def handle(self, *args, **opts) -> None:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "wavecoder_site", "worker", "-Q", "default,llm,gpu",
             "--concurrency", "2", "--loglevel", "INFO"]
        )
        web = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"{opts['host']}:{opts['port']}"]
        )
        self.stdout.write(self.style.SUCCESS(f"WaveCoder Studio at http://{opts['host']}:{opts['port']}/"))
        try:
            while worker.poll() is None and web.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            for proc in (web, worker):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in (web, worker):
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
