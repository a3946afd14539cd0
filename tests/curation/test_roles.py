"""Every page and endpoint needs a login, and each role sees only what it may."""

import pytest
from django.urls import reverse

CURATOR_PAGES = ["dashboard", "ingest-new", "selection-new", "corpus"]
CURATOR_API = ["/api/samples/", "/api/ingest-runs/", "/api/selection-runs/"]


@pytest.mark.parametrize("name", ["home", *CURATOR_PAGES])
def test_pages_redirect_anonymous_to_login(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("url", [*CURATOR_API, "/api/schema/"])
def test_api_refuses_anonymous(client, db, url):
    assert client.get(url).status_code in (401, 403)


def test_login_page_is_public(client, db):
    assert client.get(reverse("login")).status_code == 200


@pytest.mark.parametrize("name", CURATOR_PAGES)
def test_reviewer_cannot_open_curator_pages(reviewer_client, name):
    assert reviewer_client.get(reverse(name)).status_code == 403


@pytest.mark.parametrize("url", CURATOR_API)
def test_reviewer_cannot_use_curator_api(reviewer_client, url):
    assert reviewer_client.get(url).status_code == 403


@pytest.mark.parametrize("name", CURATOR_PAGES)
def test_user_without_role_is_refused(client, nobody, name):
    client.force_login(nobody)
    assert client.get(reverse(name)).status_code == 403


def test_user_without_role_is_told_so(client, nobody):
    client.force_login(nobody)
    assert b"no role yet" in client.get(reverse("home")).content


@pytest.mark.parametrize("name", CURATOR_PAGES)
def test_curator_opens_curator_pages(curator_client, name):
    assert curator_client.get(reverse(name)).status_code == 200


@pytest.mark.parametrize("url", CURATOR_API)
def test_curator_uses_api(curator_client, url):
    assert curator_client.get(url).status_code == 200


def test_reviewer_home_is_the_review_page(reviewer_client):
    response = reviewer_client.get(reverse("home"))
    assert response.status_code == 302 and response.url == reverse("review")


def test_curator_home_goes_to_dashboard(curator_client):
    assert curator_client.get(reverse("home"))["Location"] == reverse("dashboard")


@pytest.mark.parametrize("fixture", ["reviewer", "curator"])
def test_only_admins_reach_django_admin(client, request, fixture):
    client.force_login(request.getfixturevalue(fixture))
    response = client.get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_admin_reaches_django_admin_and_curator_pages(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("dashboard")).status_code == 200


def test_api_token_auth(client, curator):
    from curation.tokens import issue_token

    token = issue_token(curator)
    response = client.get("/api/samples/", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200
    assert client.get("/api/samples/", HTTP_AUTHORIZATION="Token wrong").status_code == 401


def test_post_without_csrf_token_is_refused(curator):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(curator)
    response = client.post(reverse("selection-new"), {"k": 5, "seed": 0, "model_name": "x"})
    assert response.status_code == 403
