"""`python manage.py adopt_principles`: list a task's principle versions, or make one current."""

from django.core.management.base import BaseCommand, CommandError

from curation import refinement
from curation.models import CodeTask


class Command(BaseCommand):
    help = "List a task's principle versions, or make one current (adoption or rollback) with --make-current."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--task", required=True, help="Task slug")
        parser.add_argument("--make-current", type=int, metavar="VERSION", help="The version to make current")

    def handle(self, *args, **opts) -> None:
        task = CodeTask.objects.filter(slug=opts["task"]).first()
        if task is None:
            raise CommandError(f"No task {opts['task']!r}; tasks are {', '.join(CodeTask.Slug.values)}.")
        if opts["make_current"] is None:
            for v in task.principle_versions.all():
                current = "*" if v.pk == task.current_principles_id else " "
                self.stdout.write(
                    f"{current} v{v.version}  {len(v.rules)} rules  {v.created_at:%Y-%m-%d %H:%M}  {v.note}"
                )
            return
        version = task.principle_versions.filter(version=opts["make_current"]).first()
        if version is None:
            raise CommandError(f"{task.name} has no principles v{opts['make_current']}.")
        refinement.adopt_version(version)
        self.stdout.write(f"Principles v{version.version} of {task.name} are current now.")
