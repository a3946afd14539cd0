"""`python manage.py demo_setup`: demo accounts, a real corpus (the standard library), a selection, the
offline LLM, and a first generation job queued for the worker that `run_demo` starts.

Idempotent: accounts keep their passwords (stored in the var folder); sources already ingested, a
finished selection and an existing generation job are not redone.
"""

import json
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from curation import catalog, demo, llm
from curation.roles import ADMIN, CURATOR, REVIEWER, grant
from wavecoder_site.files import write_private

DEMO_ACCOUNTS = [("admin", ADMIN), ("curator", CURATOR), ("reviewer", REVIEWER)]


class Command(BaseCommand):
    help = (
        "Create demo accounts and a small dataset, and queue the demo's jobs (ingest parts of the Python "
        "standard library, a selection, a first generation job) for the worker."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--k", type=int, default=demo.DEMO_K, help="Coreset size of the demo selection")

    def handle(self, *args, **opts) -> None:
        accounts = self._accounts()
        catalog.ensure_catalog()
        self._offline_llm()
        self._demo_dataset()
        queued = demo.queue_pipeline(opts["k"])
        if queued:
            self.stdout.write(
                f"  Queued {len(queued)} ingest runs, a selection and a first generation job for the worker "
                "(their progress is on the dashboard)"
            )
        self.stdout.write(self.style.SUCCESS("\nDemo accounts (also in var/demo-accounts.json):"))
        for username, password in accounts.items():
            self.stdout.write(f"  {username:<10} {password}")

    def _accounts(self) -> dict[str, str]:
        store = settings.VAR_DIR / "demo-accounts.json"
        saved = json.loads(store.read_text()) if store.exists() else {}
        User = get_user_model()
        for username, role in DEMO_ACCOUNTS:
            password = saved.get(username) or secrets.token_urlsafe(9)
            user, created = User.objects.get_or_create(username=username)
            if created or not user.check_password(password):
                user.set_password(password)
                user.is_superuser = role == ADMIN
                user.save()
            grant(user, role)
            saved[username] = password
        write_private(store, json.dumps(saved, indent=2))  # passwords: 0600 from the start
        return saved

    def _offline_llm(self) -> None:
        name, path, reason = llm.offline_teacher()
        if reason:
            self.stderr.write(f"  Offline teacher unavailable: {reason}")
        else:
            self.stdout.write(f"  Offline teacher: {name} ({path.name if path else ''})")

    def _demo_dataset(self) -> None:
        """A small built dataset version to fine-tune on at once (Training → CPU demo preset): a few dozen
        short Python instances, imported and accepted by the demo admin, decontaminated against HumanEval."""
        from curation import imports, review
        from training.datasets import build_version, create_version
        from training.models import DatasetVersion

        if DatasetVersion.objects.filter(status=DatasetVersion.Status.SUCCEEDED).exists():
            return
        catalog.ensure_catalog()
        path = settings.VAR_DIR / "demo-instructions.json"
        path.write_text(json.dumps(_demo_records(), indent=1))
        job = imports.import_instances(
            path, name="demo-instructions.json", task="generation", language="python"
        )
        admin = get_user_model().objects.get(username="admin")
        for instance in job.instances.all():
            review.accept(instance, admin, expected_version=None)
        version = build_version(create_version(name="Demo (CPU fine-tuning)", use_embeddings=False).pk)
        self.stdout.write(
            f"Built dataset {version.label} for the fine-tuning demo: {version.item_count} instances"
        )


def _demo_records() -> list[dict[str, str]]:
    """Short, regular instruction/solution pairs that SmolLM2 visibly learns in a few CPU steps."""
    operations = [
        ("adds", "a + b"),
        ("subtracts b from", "a - b"),
        ("multiplies", "a * b"),
        ("returns the larger of", "max(a, b)"),
        ("returns the smaller of", "min(a, b)"),
        ("returns the average of", "(a + b) / 2"),
    ]
    shapes = [
        ("two integers", "int"),
        ("two floats", "float"),
        ("two numbers", "float"),
        ("two counts", "int"),
    ]
    records = []
    for verb, expression in operations:
        for noun, kind in shapes:
            name = verb.split()[0] + "_" + noun.split()[1]
            records.append(
                {
                    "instruction": f"Write a Python function that {verb} {noun}.",
                    "input": "",
                    "output": f"def {name}(a: {kind}, b: {kind}) -> {kind}:\n    return {expression}\n",
                }
            )
    return records
