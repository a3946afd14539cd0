"""The Celery application: queues `default`, `llm` (LLM calls) and `gpu` (training, evaluation)."""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")

app = Celery("wavecoder_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("default", "llm", "gpu")]
app.conf.task_routes = {
    "curation.tasks.run_generation_job": {"queue": "llm"},
    "curation.tasks.propose_refinement": {"queue": "llm"},
    "curation.tasks.check_refinement": {"queue": "llm"},
    "curation.tasks.rejudge": {"queue": "llm"},
    "training.tasks.*": {"queue": "gpu"},
}
app.autodiscover_tasks()
