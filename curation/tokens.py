"""API tokens (`Authorization: Token …`), through django-rest-knox: only a hash of each token is stored,
each expires (settings.API_TOKEN_TTL), and every token of a user is deleted when their password changes.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models.signals import pre_save
from knox.models import get_token_model


def issue_token(user: AbstractBaseUser, ttl: timedelta | None = None) -> str:
    """A new token for `user`, valid for `ttl` (default settings.API_TOKEN_TTL). The token itself is
    returned once and never stored: only its hash is."""
    _, token = get_token_model().objects.create(user=user, expiry=ttl or settings.API_TOKEN_TTL)
    return token


def revoke_tokens(user: AbstractBaseUser) -> int:
    """Delete every API token of `user`; returns how many there were."""
    deleted, _ = get_token_model().objects.filter(user=user).delete()
    return deleted


def _revoke_on_password_change(sender, instance: AbstractBaseUser, raw: bool = False, **kwargs) -> None:
    """pre_save of the user model: a new password ends the user's API tokens (as it ends their other
    sessions). Not on a login that re-hashes the same password with newer parameters: Django saves that
    with update_fields=["password"] and no new raw password (AbstractBaseUser.check_password)."""
    if raw or instance.pk is None:
        return
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and "password" not in update_fields:
        return
    rehash = getattr(instance, "_password", None) is None and update_fields == frozenset({"password"})
    if rehash:
        return
    stored = type(instance)._default_manager.filter(pk=instance.pk).values_list("password", flat=True).first()
    if stored is not None and stored != instance.password:
        revoke_tokens(instance)


def connect_signals() -> None:
    """Called from the app's ready()."""
    pre_save.connect(
        _revoke_on_password_change, sender=get_user_model(), dispatch_uid="curation.tokens.revoke_on_password"
    )
