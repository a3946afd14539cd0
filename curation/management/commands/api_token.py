"""`python manage.py api_token USERNAME [--days N]`: issue an API token (`Authorization: Token …`)."""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from curation.tokens import issue_token, revoke_tokens


class Command(BaseCommand):
    help = (
        "Print a new API token for a user. Only its hash is stored: the token is shown this once. It "
        "expires (default WAVECODER_API_TOKEN_TTL_DAYS) and ends when the user's password changes."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--days", type=float, help="Valid for this many days (default: the setting)")
        parser.add_argument("--revoke", action="store_true", help="Delete the user's tokens instead")

    def handle(self, *args, **opts) -> None:
        try:
            user = get_user_model()._default_manager.get_by_natural_key(opts["username"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"There is no user {opts['username']!r}.")
        if opts["revoke"]:
            self.stdout.write(f"Deleted {revoke_tokens(user)} token(s) of {user.get_username()}.")
            return
        if opts["days"] is not None and opts["days"] <= 0:
            raise CommandError("--days must be a positive number.")
        ttl = timedelta(days=opts["days"]) if opts["days"] else settings.API_TOKEN_TTL
        token = issue_token(user, ttl)
        days = ttl.total_seconds() / 86400
        valid = f"{days:g} day" + ("" if days == 1 else "s")
        self.stdout.write(f"API token for {user.get_username()}, valid for {valid} (shown once):")
        self.stdout.write(f"Authorization: Token {token}")
