"""`python manage.py demo_setup`: demo accounts, a real corpus (the standard library), a selection, the
offline LLM, and a first generation job queued for the worker that `run_demo` starts.

Idempotent: accounts keep their passwords (stored in the var folder); sources already ingested, a
finished selection and an existing generation job are not redone.
"""

import json
import secrets
import sysconfig
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from curation import catalog, generation, ingest, llm, selection, tasks
from curation.management.progress import ProgressBar
from curation.models import CodeSource, GenerationJob, IngestRun, SelectionRun
from curation.roles import ADMIN, CURATOR, REVIEWER, grant
from wavecoder_site.files import write_private

# Real, permissively licensed code that is on every machine with Python: several stdlib packages.
STDLIB_PACKAGES = [
    "json",
    "email",
    "http",
    "logging",
    "asyncio",
    "concurrent",
    "urllib",
    "importlib",
    "unittest",
]
DEMO_ACCOUNTS = [("admin", ADMIN), ("curator", CURATOR), ("reviewer", REVIEWER)]
DEMO_K = 200
DEMO_SAMPLES_PER_TASK = 5
DEMO_TASKS = ("summarization", "generation", "translation", "repair")


class Command(BaseCommand):
    help = "Create demo accounts, ingest parts of the Python standard library, and run a selection."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--k", type=int, default=DEMO_K, help="Coreset size of the demo selection")

    def handle(self, *args, **opts) -> None:
        accounts = self._accounts()
        self._ingest()
        self._select(opts["k"])
        self._offline_llm()
        self._first_generation_job()
        self._demo_dataset()
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

    def _ingest(self) -> None:
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        for package in STDLIB_PACKAGES:
            folder = stdlib / package
            if not folder.is_dir():
                continue
            done = IngestRun.objects.filter(
                source__kind=CodeSource.Kind.DIRECTORY,
                source__location=str(folder),
                status=IngestRun.Status.SUCCEEDED,
            ).exists()
            if done:
                continue
            self.stdout.write(f"Ingesting the standard library's {package} package from {folder}")
            run = ingest.create_ingest_run(folder, name=f"python-stdlib/{package}")
            bar = ProgressBar(self.stdout)
            run = ingest.run_ingest(run.pk, on_progress=bar)
            bar.close()
            self.stdout.write(f"  {run.status}: kept {run.kept_count:,}")

    def _select(self, k: int) -> None:
        if SelectionRun.objects.filter(status=SelectionRun.Status.SUCCEEDED).exists():
            return
        self.stdout.write(f"Selecting a KCenterGreedy coreset of {k} samples")
        run = selection.create_selection_run(k=k, seed=0)
        bar = ProgressBar(self.stdout)
        run = selection.run_selection(run.pk, on_progress=bar)
        bar.close()
        if run.status == SelectionRun.Status.SUCCEEDED:
            self.stdout.write(
                f"  radius {run.coverage_radius:.4f} against {run.random_radius:.4f} for a random selection"
            )
        else:
            self.stderr.write(f"  selection {run.status}: {run.error}")

    def _offline_llm(self) -> None:
        name, path, reason = llm.offline_teacher()
        if reason:
            self.stderr.write(f"Offline teacher unavailable: {reason}")
        if llm.llama_server_available():
            self.stdout.write(f"Offline LLM: llama.cpp server on {path.name if path else name}")
            return
        self.stdout.write(
            "Offline LLM: llama-cpp-python is not installed; converting SmolLM2 for transformers"
        )
        self.stdout.write(f"  ready at {llm.ensure_offline_model()}")

    def _first_generation_job(self) -> None:
        if GenerationJob.objects.exists():
            return
        run = SelectionRun.objects.filter(status=SelectionRun.Status.SUCCEEDED).order_by("-pk").first()
        if run is None:
            return
        catalog.ensure_catalog()
        job = generation.create_generation_job(
            selection_run=run, tasks=list(DEMO_TASKS), samples_per_task=DEMO_SAMPLES_PER_TASK, concurrency=4
        )
        tasks.run_generation_job.delay(job.pk)
        self.stdout.write(f"Queued generation job #{job.pk}: {job.progress_total} instances for the worker")

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
