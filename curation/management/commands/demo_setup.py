"""`python manage.py demo_setup`: demo accounts, a real corpus (the standard library) and a selection.

Idempotent: accounts keep their passwords (stored in the var folder), sources already ingested and a
finished selection are not redone.
"""

import json
import secrets
import sysconfig
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from curation import ingest, selection
from curation.management.progress import ProgressBar
from curation.models import CodeSource, IngestRun, SelectionRun
from curation.roles import ADMIN, CURATOR, REVIEWER, grant

# Real, permissively licensed code that is on every machine with Python: several stdlib packages.
STDLIB_PACKAGES = ["json", "email", "http", "logging", "asyncio", "concurrent", "urllib", "importlib", "unittest"]
DEMO_ACCOUNTS = [("admin", ADMIN), ("curator", CURATOR), ("reviewer", REVIEWER)]
DEMO_K = 200


class Command(BaseCommand):
    help = "Create demo accounts, ingest parts of the Python standard library, and run a selection."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--k", type=int, default=DEMO_K, help="Coreset size of the demo selection")

    def handle(self, *args, **opts) -> None:
        accounts = self._accounts()
        self._ingest()
        self._select(opts["k"])
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
        store.write_text(json.dumps(saved, indent=2))
        store.chmod(0o600)
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
