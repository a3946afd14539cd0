"""A curator in real Chromium builds a dataset version on the Datasets page, a real Celery worker builds it
(decontamination with the default settings, MiniLM embeddings included), and the curator downloads it."""

import json
import re

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import worker  # noqa: F401 - the real Celery worker fixture
from tests.training.dataset_factory import CLEAN, humaneval_leaks, make_accepted, make_clean
from tests.training.test_decontamination import FIXTURES
from training.models import DatasetVersion

from .conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _paraphrased_leak(item_id: str) -> dict:
    """A leak with a reworded statement over renamed code (the embedding method sees it besides n-grams)."""
    rows = [json.loads(line) for line in (FIXTURES / "paraphrased_leaks.jsonl").read_text().splitlines()]
    return next(row for row in rows if row["item_id"] == item_id)


def test_a_curator_builds_a_version_and_downloads_it(page, live_server, worker, curator, reviewer, tmp_path):  # noqa: F811
    clean = make_clean(reviewer)
    verbatim = make_accepted(
        reviewer, instruction="Write a Python function.", output=humaneval_leaks()["verbatim"]
    )
    reworded = _paraphrased_leak("HumanEval/107")
    paraphrased = make_accepted(reviewer, instruction=reworded["instruction"], output=reworded["output"])
    near_copy = make_accepted(reviewer, instruction=CLEAN[5][0] + " ", output=CLEAN[5][1] + "\n")
    worker()

    log_in(page, live_server, "carl", "pw-carl")
    page.click("header nav >> text=Datasets")
    expect(page.locator("h1")).to_have_text("Dataset versions")
    page.click("text=New version")
    expect(page.locator("input[name=use_embeddings]")).to_be_checked()  # the default: every method
    expect(page.get_by_label("HumanEval (164 items)")).to_be_checked()
    page.fill("input[name=name]", "Browser build")
    page.click("button:has-text('Build version')")

    expect(page).to_have_url(re.compile(r"/datasets/v1/$"))
    status = page.locator("#version-status")
    expect(status).to_contain_text("Succeeded", timeout=180_000)  # htmx polls until the worker is done
    expect(status).to_contain_text("6 instances of 9 accepted")
    expect(status).to_contain_text("2 left out for leaking a benchmark")
    expect(status).to_contain_text("1 near duplicates removed")
    page.reload()
    exclusions = page.locator("#exclusions")
    expect(exclusions.locator("tr", has_text="HumanEval/0").first).to_contain_text("ngram")
    expect(exclusions.locator("tr", has_text="HumanEval/107").filter(has_text="embedding")).to_have_count(1)
    expect(exclusions).to_contain_text(f"duplicate of #{clean[5].pk}")

    with page.expect_download() as info:
        page.click("#version-status >> text=Alpaca JSON")
    download = info.value
    assert download.suggested_filename == "wavecoder-v1-alpaca.json"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    rows = json.loads(target.read_text())
    version = DatasetVersion.objects.get(number=1)
    assert rows == list(version.items.order_by("position").values("instruction", "input", "output"))
    assert [r["instruction"] for r in rows] == [i.instruction for i in clean]
    kept = set(version.items.values_list("instance_id", flat=True))
    assert not kept & {verbatim.pk, paraphrased.pk, near_copy.pk}

    with page.expect_download() as info:
        page.click("#version-status >> text=Dataset card")
    card = tmp_path / "README.md"
    info.value.save_as(card)
    assert "pretty_name: Browser build" in card.read_text() and "all-MiniLM-L6-v2" in card.read_text()
