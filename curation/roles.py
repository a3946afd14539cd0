"""Roles: reviewer < curator < admin.

Reviewers and curators are Django groups; an admin is a staff user. Each role includes the ones below it,
so a curator can also review and an admin can do everything.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.permissions import BasePermission

REVIEWER = "reviewer"
CURATOR = "curator"
ADMIN = "admin"
_RANK = {REVIEWER: 1, CURATOR: 2, ADMIN: 3}


def role_of(user: AbstractBaseUser | AnonymousUser) -> str | None:
    """The highest role a user holds, or None. Remembered on the user object: a request asks often
    (menus, decorators, views) and the answer does not change within it."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser or user.is_staff:
        return ADMIN
    if not hasattr(user, "_wavecoder_role"):
        names = set(user.groups.values_list("name", flat=True))
        user._wavecoder_role = CURATOR if CURATOR in names else REVIEWER if REVIEWER in names else None
    return user._wavecoder_role


def has_role(user: AbstractBaseUser | AnonymousUser, role: str) -> bool:
    """True when the user's role is `role` or one above it."""
    mine = role_of(user)
    return mine is not None and _RANK[mine] >= _RANK[role]


def grant(user: AbstractBaseUser, role: str) -> None:
    """Give a user a role (admin makes them a superuser: the Django admin and every permission)."""
    if role == ADMIN:
        user.is_staff = user.is_superuser = True
        user.save(update_fields=["is_staff", "is_superuser"])
        return
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    user.__dict__.pop("_wavecoder_role", None)


def role_required(role: str) -> Callable:
    """View decorator: 403 unless the logged-in user holds `role` (login itself is enforced globally)."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role} role.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


class _RolePermission(BasePermission):
    role = REVIEWER

    def has_permission(self, request, view) -> bool:
        return has_role(request.user, self.role)


class IsReviewer(_RolePermission):
    role = REVIEWER


class IsCurator(_RolePermission):
    role = CURATOR


class IsAdmin(_RolePermission):
    role = ADMIN


def role_context(request: HttpRequest) -> dict:
    """Template context: the user's role and what it allows, for menus."""
    user = getattr(request, "user", None)
    if user is None:
        return {}
    return {
        "user_role": role_of(user),
        "can_review": has_role(user, REVIEWER),
        "can_curate": has_role(user, CURATOR),
        "can_admin": has_role(user, ADMIN),
    }
