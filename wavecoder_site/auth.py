"""Authentication backends: django-axes' login throttling in front of Django's model backend."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class ThrottledLoginBackend(AxesStandaloneBackend):
    """django-axes' backend, for logins that come with an HTTP request (the login page, the admin's, DRF's
    basic authentication): a locked-out account or address is refused before its password is checked.

    `authenticate()` without a request (the test client's `login()`, a shell) has no address to throttle
    by; django-axes would refuse it outright, so it is passed on to the next backend unthrottled.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs
    ):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
