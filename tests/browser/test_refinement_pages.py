"""A curator in a real browser: agreement analytics, pinning a pool example, rolling principles back."""

import pytest
from playwright.sync_api import expect

from curation.catalog import new_principle_version
from curation.models import CodeTask, PoolExample

from .conftest import log_in

pytestmark = pytest.mark.browser


def test_analytics_pools_and_rollback(page, live_server, curator, decided):
    a, _ = decided
    log_in(page, live_server, "carl", "pw-carl")
    page.click("nav >> text=Analytics")
    section = page.locator("#task-generation")
    expect(section.locator('[data-cell="false_reject"]')).to_contain_text("3")
    expect(section.locator('[data-cell="true_accept"]')).to_contain_text("1")
    expect(section.locator("[data-kappa]")).to_have_text("-0.20")
    expect(section.locator("svg.chart").first).to_be_visible()
    expect(section.get_by_text(a).first).to_be_visible()

    # Pinning is an htmx swap of the row.
    example = PoolExample.objects.filter(task__slug="generation", origin="human", kind="bad").first()
    page.goto(f"{live_server.url}/pools/?task=generation&kind=bad&origin=human")
    row = page.locator(f"#pool-{example.pk}")
    expect(row.get_by_text("<b>bad</b>")).to_be_visible()  # shown as text, not markup
    row.get_by_role("button", name="Pin").click()
    expect(page.locator(f"#pool-{example.pk}").get_by_role("button", name="Unpin")).to_be_visible()
    example.refresh_from_db()
    assert example.pinned

    # Rollback: one click on the task page.
    task = CodeTask.objects.get(slug="generation")
    v1 = task.current_principles
    new_principle_version(task, rules=v1.rules[1:], note="without the first rule")
    page.goto(f"{live_server.url}/tasks/generation/")
    page.get_by_title(f"Make v{v1.version} the current principles").click()
    expect(page.locator(".flash")).to_contain_text(f"Principles v{v1.version}")
    task.refresh_from_db()
    assert task.current_principles == v1
