from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_catalog(sender, **kwargs) -> None:
    from .catalog import ensure_catalog

    ensure_catalog()


class CurationConfig(AppConfig):
    name = "curation"
    verbose_name = "Curation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every database gets the four tasks with version 1 of their prompts and principles.
        post_migrate.connect(_ensure_catalog, sender=self, dispatch_uid="curation.ensure_catalog")
        # A password change ends the user's API tokens.
        from .tokens import connect_signals

        connect_signals()
