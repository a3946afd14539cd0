"""A reviewer in real Chromium: three instances with the keyboard only (accept, edit, reject), then the
database is checked; and two browsers editing the same instance get a clear conflict."""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from curation.models import Instance, InstanceRevision, Review
from curation.roles import REVIEWER, grant
from tests.review.factory import make_instance, make_job

from .conftest import log_in

pytestmark = pytest.mark.browser


def _pane_shows(page, instance: Instance) -> None:
    expect(page.locator("#instance")).to_have_attribute("data-instance", str(instance.pk))


def test_review_three_instances_with_the_keyboard_only(page, live_server, reviewer):
    job = make_job()
    first, second, third = (make_instance(job) for _ in range(3))
    make_instance(job, failed_rules=("readable",))  # a fourth, so the queue is not empty after three
    log_in(page, live_server, "rita", "pw-rita")
    expect(page).to_have_url(re.compile(r"/review/"))
    _pane_shows(page, first)

    page.keyboard.press("?")
    expect(page.locator("#shortcuts")).to_have_attribute("open", "")
    page.keyboard.press("?")

    page.keyboard.press("a")  # accept the first
    _pane_shows(page, second)

    page.keyboard.press("e")  # edit the second: the panel opens with the cursor in its first field
    expect(page.locator("#edit-panel")).to_have_attribute("open", "")
    page.keyboard.press("Tab")  # instruction → input
    page.keyboard.press("Tab")  # input → output
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# edited in the browser")
    page.keyboard.press("a")  # typing "a" in a field does not accept
    _pane_shows(page, second)
    page.keyboard.press("Control+Enter")
    _pane_shows(page, third)

    page.keyboard.press("r")  # reject the third with a reason and a broken rule
    expect(page.locator("#reject-panel")).to_have_attribute("open", "")
    page.keyboard.type("The function ignores negative numbers.")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")  # tick the first rule
    page.keyboard.press("Control+Enter")
    expect(page.locator("#instance")).not_to_have_attribute("data-instance", str(third.pk))

    for instance in (first, second, third):
        instance.refresh_from_db()
    assert first.human_decision == "accept"
    assert second.human_decision == "accept"
    revision = InstanceRevision.objects.get(instance=second)
    # The "a" typed in the field stayed text instead of accepting.
    assert revision.output == "def add(a, b):\n    return a + b\n# edited in the browsera"
    assert third.human_decision == "reject"
    review = Review.objects.get(instance=third)
    assert review.reason == "The function ignores negative numbers."
    assert len(review.broken_rules) == 1


def test_two_browsers_editing_the_same_instance_conflict(browser, live_server, reviewer):
    other = get_user_model().objects.create_user("ron", password="pw-ron")
    grant(other, REVIEWER)
    job = make_job(overlap=2)
    instance = make_instance(job)
    pages = []
    for username in ("rita", "ron"):
        page = browser.new_context().new_page()
        page.set_default_timeout(15_000)
        log_in(page, live_server, username, f"pw-{username}")
        _pane_shows(page, instance)
        page.keyboard.press("e")
        pages.append(page)
    rita, ron = pages

    rita.locator("#edit-form textarea[name=output]").fill("def add(a, b):\n    return b + a  # rita")
    rita.keyboard.press("Control+Enter")
    expect(rita.locator("#instance")).to_have_count(0)  # her queue is empty now

    ron.locator("#edit-form textarea[name=output]").fill("def add(a, b):\n    return a + b  # ron")
    ron.keyboard.press("Control+Enter")
    expect(ron.locator("#conflict")).to_contain_text("Newer version")
    expect(ron.locator("#conflict")).to_contain_text("# ron")  # his unsaved text is shown, not lost
    expect(ron.locator("#instance")).not_to_contain_text("# rita")  # blind: not Rita's edit

    revisions = list(InstanceRevision.objects.filter(instance=instance))
    assert [r.output.split("# ")[-1] for r in revisions] == ["rita"], "no silent overwrite"
    for page in pages:
        page.context.close()
