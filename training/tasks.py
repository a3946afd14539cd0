"""Celery tasks of the training app: thin wrappers that call the stage functions with an id."""

from celery import shared_task
from celery.signals import worker_ready

from curation.tasks import worker_consumes
from training import datasets


# The `default` queue, named here: the project routes `training.tasks.*` to the GPU workers, and building
# a dataset needs none (an explicit queue option outranks the routing table).
@shared_task(name="training.tasks.build_dataset_version", acks_late=True, queue="default")
def build_dataset_version(version_id: int) -> None:
    """Build one DatasetVersion (a redelivered task finds it finished and does nothing)."""
    datasets.build_version(version_id)


# The `gpu` queue (the project's route for training.tasks.*). acks_late + reject_on_worker_lost: a worker
# that dies mid-run leaves the message to another worker, which re-claims the run once its heartbeat is
# stale and resumes it from the newest checkpoint. A week's time limit: runs take hours to days.
@shared_task(
    name="training.tasks.run_training",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=7 * 24 * 3600,
    time_limit=7 * 24 * 3600 + 600,
)
def run_training(run_id: int) -> None:
    """Train one TrainingRun in a subprocess, following its progress into the row."""
    from training import runs

    runs.run_training(run_id)


@shared_task(name="training.tasks.run_evaluation", acks_late=True, reject_on_worker_lost=True)
def run_evaluation(evaluation_id: int) -> None:
    """HumanEval of one model; the generated code runs only in the sandbox."""
    from training import runs

    runs.run_evaluation(evaluation_id)


@worker_ready.connect
def requeue_orphaned_runs(sender=None, **kwargs) -> None:
    """A worker that takes the `gpu` queue, once started, queues again the training runs whose worker died
    (a machine that rebooted, a killed worker): they resume from their newest checkpoint without waiting
    for the broker to redeliver (Redis does so only after its visibility timeout; the filesystem broker
    never does). Evaluations whose worker on this machine died start over."""
    if not worker_consumes(sender, "gpu"):
        return
    from training import runs

    try:
        runs.requeue_orphaned_runs()
    except Exception:  # a database hiccup must not stop the worker from starting
        runs.logger.exception("could not look for orphaned training runs")
