"""Celery tasks: thin wrappers that call the stage functions with a job id."""

import logging

from celery import shared_task
from celery.signals import worker_ready

from . import generation, ingest, refinement, selection

logger = logging.getLogger(__name__)


def worker_consumes(sender, queue: str) -> bool:
    """Whether the worker that sent `worker_ready` takes tasks from `queue`."""
    consumer = getattr(sender, "task_consumer", None)
    return queue in {q.name for q in getattr(consumer, "queues", ())}


@shared_task(name="curation.tasks.ingest_source", acks_late=True)
def ingest_source(run_id: int) -> None:
    """Run one IngestRun (a redelivered task finds a finished run and does nothing)."""
    ingest.run_ingest(run_id)


@shared_task(name="curation.tasks.run_selection", acks_late=True)
def run_selection(run_id: int) -> None:
    """Embed the pool and pick a KCenterGreedy coreset for one SelectionRun."""
    selection.run_selection(run_id)


@shared_task(name="curation.tasks.run_generation_job", acks_late=True)
def run_generation_job(job_id: int) -> None:
    """Generate and judge a job's instances (the `llm` queue). Several can work on one job at once."""
    generation.run_generation(job_id)


@shared_task(name="curation.tasks.demo_select_and_generate", acks_late=True, bind=True, max_retries=None)
def demo_select_and_generate(self, k: int) -> None:
    """The demo's selection and first generation job, once its first packages are ingested.

    While the llama.cpp engine is still building, the job waits for it: measured here, the in-process
    engine wrote nothing in 12 minutes while the build took both cores, so the teacher comes sooner.
    """
    from . import demo, llm

    building = llm.engine_state().get("state") == "building"
    demo.select_and_generate(k, create_job=not building)
    if building:
        raise self.retry(countdown=15)


@shared_task(name="curation.tasks.propose_refinement", acks_late=True)
def propose_refinement(run_id: int) -> None:
    """Ask the LLM for a revised principle set (the `llm` queue)."""
    refinement.propose(run_id)


@shared_task(name="curation.tasks.check_refinement", acks_late=True)
def check_refinement(run_id: int) -> None:
    """Judge the held-out instances with the current and the proposed principles (the `llm` queue)."""
    refinement.check(run_id)


@shared_task(name="curation.tasks.rejudge", acks_late=True)
def rejudge(job_id: int) -> None:
    """Re-run the discriminator on unreviewed instances (the `llm` queue)."""
    refinement.run_rejudge(job_id)


@worker_ready.connect
def fail_orphaned_jobs(sender=None, **kwargs) -> None:
    """Any worker, once started, fails (with a message) the running jobs whose worker process on this
    machine is gone, so none stays "running" for ever; the kinds that recover by themselves are left to
    the handlers below and in training.tasks."""
    from .models import fail_orphaned_jobs as fail

    try:
        for label in fail():
            logger.warning("%s: its worker is gone; marked failed", label)
    except Exception:  # a database hiccup must not stop the worker from starting
        logger.exception("could not look for orphaned jobs")


@worker_ready.connect
def resume_running_generation_jobs(sender=None, **kwargs) -> None:
    """A worker that takes the `llm` queue, once started, works on every running generation job again: a
    job whose worker died (a killed worker, a reboot; the filesystem broker never redelivers) goes on by
    itself. Safe when the job's worker is alive elsewhere: rows are leased one worker at a time, and a dead
    worker's rows come free when their lease ends."""
    if not worker_consumes(sender, "llm"):
        return
    try:
        for job_id in generation.running_job_ids():
            logger.info("generation job %s is running: this worker joins it", job_id)
            run_generation_job.delay(job_id)
    except Exception:  # a database hiccup must not stop the worker from starting
        logger.exception("could not look for running generation jobs")
