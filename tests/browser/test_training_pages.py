"""An admin in real Chromium starts a short training run from the Training page (a tiny model path in the
base model field), a real Celery worker trains it, and the page shows the status and the loss chart live."""

import re

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import worker  # noqa: F401 - the real Celery worker fixture
from tests.training.run_factory import build_version_for_training
from tests.training.tiny_model import build_tiny_model

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def built_version(reviewer):
    return build_version_for_training(reviewer)


def test_an_admin_starts_a_run_and_watches_the_loss_chart(
    page,
    live_server,
    worker,  # noqa: F811 - the fixture imported above
    admin_user,
    built_version,
    settings,
    tmp_path,
):
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    model = build_tiny_model(tmp_path / "tiny")
    worker(env={"WAVECODER_ARTIFACTS_DIR": str(settings.ARTIFACTS_DIR)})

    log_in(page, live_server, "ada", "pw-ada")
    page.click("header nav >> text=Training")
    expect(page.locator("h1")).to_have_text("Training runs")
    page.click("text=New run · CPU demo preset")
    expect(page.locator("input[name=global_batch_size]")).to_have_value("4")
    page.fill("input[name=base_model]", str(model))
    page.fill("input[name=max_steps]", "0")  # an error first: nothing is queued
    page.click("button:has-text('Start training')")
    expect(page.locator("#form-errors")).to_contain_text("max_steps must be at least 1")
    page.fill("input[name=max_steps]", "6")
    page.fill("input[name=learning_rate]", "0.005")
    page.select_option("select[name=bf16]", "off")
    page.click("button:has-text('Start training')")

    expect(page).to_have_url(re.compile(r"/training/\d+/$"))
    status = page.locator("#run-status")
    expect(status.locator("svg.chart polyline")).to_be_visible(timeout=120_000)  # htmx swaps in the chart
    expect(status).to_contain_text("Succeeded", timeout=120_000)
    expect(status.locator("#run-stats")).to_contain_text("6 / 6")
    expect(status).to_contain_text("Compare base and tuned")
    expect(page.locator("#run-log")).to_contain_text("step 6/6")
