"""Celery tasks of the training app: thin wrappers that call the stage functions with an id."""

from celery import shared_task

from training import datasets


# The `default` queue, named here: the project routes `training.tasks.*` to the GPU workers, and building
# a dataset needs none (an explicit queue option outranks the routing table).
@shared_task(name="training.tasks.build_dataset_version", acks_late=True, queue="default")
def build_dataset_version(version_id: int) -> None:
    """Build one DatasetVersion (a redelivered task finds it finished and does nothing)."""
    datasets.build_version(version_id)
