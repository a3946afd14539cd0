"""A curator in a real browser: log in, dashboard, corpus, a generation job and its instances."""

import re

import pytest
from playwright.sync_api import expect

from curation import generation, ingest
from tests.curation.corpus_factory import write_package

from .conftest import log_in

pytestmark = pytest.mark.browser


def test_curator_walks_through_stage_one_and_two(page, live_server, curator, tmp_path):
    run = ingest.run_ingest(ingest.create_ingest_run(write_package(tmp_path / "pkg")).pk)
    log_in(page, live_server, "carl", "pw-carl")
    expect(page).to_have_url(re.compile(r"/dashboard/$"))
    expect(page.locator("h1")).to_have_text("Curator dashboard")
    expect(page.get_by_text("No job is running.")).to_be_visible()
    page.click(f"text=#{run.pk}")
    expect(page.locator("#run-status")).to_contain_text("Succeeded")

    # The corpus filter is an htmx request that swaps the table only.
    page.goto(f"{live_server.url}/corpus/")
    page.fill("input[name=q]", "fizzbuzz")
    expect(page.locator("#sample-table")).to_contain_text("1 samples")
    page.click("#sample-table >> text=fizzbuzz")
    expect(page.locator(".code")).to_contain_text("FizzBuzz")


def test_generation_job_page_polls_until_done(page, live_server, curator):
    from tests.curation.pipeline_factory import make_selection

    job = generation.create_generation_job(
        selection_run=make_selection(), tasks=["repair"], samples_per_task=2
    )
    log_in(page, live_server, "carl", "pw-carl")
    page.goto(f"{live_server.url}/generation/{job.pk}/")
    expect(page.locator("#job-status")).to_contain_text("0 / 2 finished")
    page.click("text=Pause")
    expect(page.locator("#job-status")).to_contain_text("Paused")
    page.click("text=Cancel")
    expect(page.locator("#job-status")).to_contain_text("Cancelled")
    expect(page.locator("#job-status")).to_contain_text("2 / 2 finished")


def test_anonymous_browser_is_sent_to_login(page, live_server, db):
    page.goto(f"{live_server.url}/dashboard/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/dashboard/"))
