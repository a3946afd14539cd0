"""The whole refinement loop with a stub LLM: reviews → pools → analytics → proposal → edit →
held-out check → adoption → new instances judged with the new version → re-judging → rollback."""

import pytest

from curation import analytics, catalog, generation, refinement, review
from curation.llm import OpenAICompatibleClient
from curation.models import CodeTask, Instance, LLMCall, PoolExample, RefinementRun, RejudgeJob, SelectionRun
from tests.fakes.openai_stub import OpenAIStub
from tests.review.factory import make_instance, make_job, rules_of

from .stub import combined, proposer, strict_judge

BROKEN = "def add(a, b):\n    return a - b  # BROKEN"


def _client(stub):
    return OpenAICompatibleClient(stub.base_url, timeout=5, max_retries=2, backoff_base=0.01)


@pytest.fixture
def reviewed(db, reviewer):
    """Twelve generation instances judged by a discriminator whose rule `misfiring` rejects every good
    one and which lets the three broken ones through; reviewers accept the nine good ones and reject the
    broken ones, naming the broken rule."""
    misfiring, correct = rules_of("generation")[0], rules_of("generation")[1]
    job = make_job()
    rows = []
    for n in range(12):
        broken = n % 4 == 3
        instance = make_instance(
            job,
            passed=broken,
            failed_rules=() if broken else (misfiring,),
            output=BROKEN if broken else "def add(a, b):\n    return a + b",
        )
        if broken:
            review.reject(
                instance, reviewer, reason="It subtracts.", broken_rules=[correct], expected_version=0
            )
        else:
            review.accept(instance, reviewer, expected_version=0)
        rows.append(instance)
    return misfiring, correct, rows


def split_seed(rows):
    """A split seed that leaves a rejected instance among the cases and two accepted ones held out:
    row ids differ between databases and test orders, so a fixed seed would split them differently."""
    rejected = rows[3::4]
    accepted = [r for n, r in enumerate(rows) if n % 4 != 3]
    return next(
        s
        for s in range(1000)
        if any(not refinement._held_out(r.pk, s, 0.5) for r in rejected)
        and sum(refinement._held_out(r.pk, s, 0.5) for r in accepted) >= 2
    )


def test_full_loop(reviewed, curator):
    misfiring, correct, rows = reviewed
    task = CodeTask.objects.get(slug="generation")
    v1 = task.current_principles

    # Reviews → pools: accepted ones are good examples, rejected ones bad with the reviewer's reason;
    # the human entries replaced the discriminator's.
    human = PoolExample.objects.filter(task=task, origin=PoolExample.Origin.HUMAN)
    assert human.filter(kind="good").count() == 9
    bad = human.filter(kind="bad")
    assert bad.count() == 3 and all("It subtracts." in e.reasons and correct in e.reasons for e in bad)
    assert not PoolExample.objects.filter(instance__in=rows, origin=PoolExample.Origin.DISCRIMINATOR).exists()

    # Analytics: every accepted instance is a false rejection caused by the misfiring rule, every
    # rejected one a false acceptance blamed on the rule the reviewer named.
    stats = analytics.task_analytics(task)
    assert stats.confusion.false_reject == 9 and stats.confusion.false_accept == 3
    assert stats.false_rejection_ranking[0].rule_id == misfiring
    assert stats.false_acceptance_ranking[0].rule_id == correct

    judge = strict_judge(misfiring)
    unreviewed = make_instance(make_job(), passed=False, failed_rules=(misfiring,))
    with OpenAIStub(responder=combined(judge, proposer(misfiring))) as stub:
        client = _client(stub)
        # Proposal.
        run = refinement.create_refinement_run(
            task, user=curator, heldout_fraction=0.5, seed=split_seed(rows)
        )
        assert run.heldout_ids and run.case_ids
        assert not set(run.heldout_ids) & set(run.case_ids)
        run = refinement.propose(run.pk, client=client)
        assert run.stage == RefinementRun.Stage.PROPOSED, run.error
        ops = {c["id"]: c["op"] for c in run.changes}
        assert ops[misfiring] == "removed"
        assert next(c for c in run.changes if c["id"] == misfiring)["rationale"]
        proposal_prompt = stub.requests[0]["messages"][-1]["content"]
        assert "It subtracts." in proposal_prompt  # the human reasons reach the LLM
        # The curator rewords a rule; the diff shows it.
        edited = [dict(r) for r in run.proposed_rules]
        edited[0]["question"] = "Does the instruction name Python or another language explicitly?"
        run = refinement.edit_proposal(run, edited, user=curator)
        assert {c["id"]: c["op"] for c in run.changes}[edited[0]["id"]] == "reworded"
        assert "Edited by the curator." in run.changes[0]["rationale"]
        # Adoption needs the check first.
        with pytest.raises(refinement.RefinementError, match="held-out check"):
            refinement.adopt(run, user=curator)
        # Held-out check: the same instances, judged with both versions.
        run = refinement.prepare_check(run, user=curator)
        run = refinement.check(run.pk, client=client)
        assert run.stage == RefinementRun.Stage.CHECKED, run.error
        results = run.check_results
        assert results["judged"] == len(run.heldout_ids) == results["heldout"]
        assert results["proposed"]["agreement"] == 1.0
        assert results["current"]["agreement"] < results["proposed"]["agreement"]
        assert results["current"]["n"] == results["proposed"]["n"]
        # Every call of the check is counted with its tokens, like a generation job's.
        calls = LLMCall.objects.filter(instance_id__in=run.heldout_ids, role=LLMCall.Role.DISCRIMINATOR)
        assert calls.count() == 2 * len(run.heldout_ids) and all(c.completion_tokens > 0 for c in calls)
        # The proposed rules fix both kinds of error on the held-out part.
        assert results["proposed"]["false_reject"] == results["proposed"]["false_accept"] == 0
        task.refresh_from_db()
        assert task.current_principles == v1  # nothing adopted yet

        # Adoption: one action.
        v2 = refinement.adopt(run, user=curator)
        task.refresh_from_db()
        assert task.current_principles == v2 and v2 == run.proposed_version
        assert misfiring not in [r["id"] for r in v2.rules]

        # New instances are judged with the new version and record it.
        selection = SelectionRun.objects.first()
        job = generation.create_generation_job(
            selection_run=selection, tasks=["generation"], samples_per_task=1, execute=False
        )
        job = generation.run_generation(job.pk, client=client)
        new = job.instances.get()
        assert new.verdict.principle_version == v2 and new.passed

        # Re-judging: the unreviewed instance from before is judged again with v2.
        rejudge = refinement.create_rejudge_job(tasks=["generation"], user=curator)
        assert rejudge.progress_total == 1
        rejudge = refinement.run_rejudge(rejudge.pk, client=client)
        assert rejudge.status == RejudgeJob.Status.SUCCEEDED and rejudge.changed == 1
        unreviewed.refresh_from_db()
        assert unreviewed.verdict.principle_version == v2 and unreviewed.passed
        # Reviewed instances kept their verdicts.
        assert all(Instance.objects.get(pk=r.pk).verdict.principle_version == v1 for r in rows)
        with pytest.raises(refinement.RefinementError, match="No unreviewed instance"):
            refinement.create_rejudge_job(tasks=["generation"])

        # Rollback: one action; the next instance is judged with v1 again.
        refinement.adopt_version(v1, user=curator)
        task.refresh_from_db()
        assert task.current_principles == v1
        job = generation.create_generation_job(
            selection_run=selection,
            tasks=["generation"],
            samples_per_task=1,
            execute=False,
            generator_model="another-model",
        )
        job = generation.run_generation(job.pk, client=client)
        assert job.instances.get().verdict.principle_version == v1


def test_garbage_proposal_fails_the_run_with_the_raw_text(reviewed, curator):
    with OpenAIStub(responder=lambda request: "I think the rules are fine!!") as stub:
        run = refinement.create_refinement_run(
            "generation", user=curator, heldout_fraction=0.5, seed=split_seed(reviewed[2])
        )
        run = refinement.propose(run.pk, client=_client(stub))
    assert run.stage == RefinementRun.Stage.FAILED and run.status == RefinementRun.Status.FAILED
    assert "could not be read" in run.error and run.raw_response == "I think the rules are fine!!"


def test_unjudgeable_heldout_answers_are_left_out_of_both_scores(reviewed, curator):
    misfiring = reviewed[0]
    garbage_for = set()

    def judge(request):
        prompt = request["messages"][-1]["content"]
        if "Does the instruction name Python" in prompt or len(garbage_for) >= 1:
            return strict_judge(misfiring)(request)
        garbage_for.add(1)
        return "not json"

    with OpenAIStub(responder=combined(judge, proposer(misfiring))) as stub:
        run = refinement.create_refinement_run(
            "generation", user=curator, heldout_fraction=0.5, seed=split_seed(reviewed[2])
        )
        run = refinement.propose(run.pk, client=_client(stub))
        run = refinement.check(refinement.prepare_check(run).pk, client=_client(stub))
    results = run.check_results
    assert results["unjudged"] == 1 and results["judged"] == results["heldout"] - 1
    assert results["current"]["n"] == results["proposed"]["n"] == results["judged"]
    assert any(case["error"] for case in results["cases"])


def test_refinement_needs_disagreements(db, reviewer):
    job = make_job()
    for _ in range(3):
        instance = make_instance(job)
        review.accept(instance, reviewer, expected_version=0)
    with pytest.raises(refinement.RefinementError, match="no disagreements"):
        refinement.create_refinement_run("generation", heldout_fraction=0.5)
    with pytest.raises(refinement.RefinementError, match="between 0 and 1"):
        refinement.create_refinement_run("generation", heldout_fraction=1.5)
    with pytest.raises(refinement.RefinementError, match="No task"):
        refinement.create_refinement_run("nope")


def test_edit_box_errors_name_the_lines():
    with pytest.raises(ValueError, match="Line 2"):
        catalog.parse_rules_text("a: Is it fine?\nno colon here\n")
    with pytest.raises(ValueError, match="used twice"):
        catalog.parse_rules_text("a: One?\na: Two?")
    assert catalog.parse_rules_text("\nok_rule:  Is it ok? \n") == [
        {"id": "ok_rule", "question": "Is it ok?"}
    ]
