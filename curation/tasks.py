"""Celery tasks: thin wrappers that call the stage functions with a job id."""

from celery import shared_task

from . import generation, ingest, refinement, selection


@shared_task(name="curation.tasks.ingest_source", acks_late=True)
def ingest_source(run_id: int) -> None:
    """Run one IngestRun (a redelivered task finds it claimed or finished and does nothing)."""
    ingest.run_ingest(run_id)


@shared_task(name="curation.tasks.run_selection", acks_late=True)
def run_selection(run_id: int) -> None:
    """Embed the pool and pick a KCenterGreedy coreset for one SelectionRun."""
    selection.run_selection(run_id)


@shared_task(name="curation.tasks.run_generation_job", acks_late=True)
def run_generation_job(job_id: int) -> None:
    """Generate and judge a job's instances (the `llm` queue). Several can work on one job at once."""
    generation.run_generation(job_id)


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
