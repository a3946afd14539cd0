"""The few-shot policy: pinned first, removed never, human before seed before discriminator, languages
balanced, diverse within a language, k from the WAVECODER_FEW_SHOT setting."""

from curation import generation, pools
from curation.models import CodeTask, PoolExample
from tests.curation.pipeline_factory import make_selection


def _example(task, *, origin="discriminator", language="python", text="def f(x):\n    return x", **kw):
    return PoolExample.objects.create(
        task=task, kind="good", origin=origin, language=language, instruction=text, output=text, **kw
    )


def _clear(task):
    task.pool.all().delete()


def test_pinned_first_removed_never(db):
    task = CodeTask.objects.get(slug="generation")
    _clear(task)
    pinned = _example(task, pinned=True, text="pinned one")
    removed = _example(task, origin="human", removed=True, text="removed one")
    others = [_example(task, text=f"def g{n}(): pass") for n in range(4)]
    chosen = pools.few_shot(task, "good", 3, language="python")
    assert chosen[0] == pinned and removed not in chosen and len(chosen) == 3
    assert set(chosen[1:]) <= set(others)
    # Removing the pinned example takes it out (and unpins it).
    pools.set_removed(pinned, True)
    pinned.refresh_from_db()
    assert not pinned.pinned and pinned not in pools.few_shot(task, "good", 3)


def test_human_examples_outrank_the_discriminator(db):
    task = CodeTask.objects.get(slug="generation")
    _clear(task)
    machine = [_example(task, text=f"def m{n}(): return {n}") for n in range(5)]
    human = _example(task, origin="human", text="def h(): return 'human'")
    for seed in range(5):
        assert pools.few_shot(task, "good", 1, seed=seed) == [human]
    assert machine  # the discriminator's are there, just ranked lower


def test_languages_are_balanced_prompt_language_first(db):
    task = CodeTask.objects.get(slug="generation")
    _clear(task)
    for n in range(4):
        _example(task, language="python", text=f"def p{n}(): return {n}")
    _example(task, language="javascript", text="function j() { return 1; }")
    _example(task, language="go", text="func g() int { return 1 }")
    chosen = pools.few_shot(task, "good", 3, language="javascript")
    assert [e.language for e in chosen][0] == "javascript"
    assert {e.language for e in chosen} == {"javascript", "go", "python"}


def test_diverse_within_a_language(db):
    task = CodeTask.objects.get(slug="generation")
    _clear(task)
    sort_code = "def sort_items(items):\n    return sorted(items, key=lambda item: item.name)"
    near = [_example(task, text=sort_code + f"  # v{n}") for n in range(3)]
    other = _example(task, text="class Stack:\n    def push(self, value):\n        self.data.append(value)")
    for seed in range(6):
        chosen = pools.few_shot(task, "good", 2, seed=seed)
        # Whichever comes first, the second is the one least like it.
        if chosen[0] == other:
            assert chosen[1] in near
        else:
            assert chosen[1] == other


def test_held_out_instances_can_be_excluded(db):
    from tests.review.factory import make_instance, make_job

    task = CodeTask.objects.get(slug="generation")
    _clear(task)
    instance = make_instance(make_job())
    pools.add_judged(instance, instance.verdict)
    assert pools.few_shot(task, "good", 10)[0].instance_id == instance.pk
    chosen = pools.few_shot(task, "good", 10, exclude_instances={instance.pk})
    assert all(e.instance_id != instance.pk for e in chosen)


def test_examples_per_prompt_is_a_setting(db, settings):
    settings.FEW_SHOT = 4
    job = generation.create_generation_job(
        selection_run=make_selection(1), tasks=["generation"], samples_per_task=1, execute=False
    )
    assert job.few_shot == 4


def test_no_example_resembles_the_code_at_hand(db):
    task = CodeTask.objects.get(slug="generation")
    _clear(task)
    code = (
        "def parse_header(line):\n    key, _, value = line.partition(':')\n"
        "    return key.strip(), value.strip()"
    )
    twin = _example(task, origin="human", text=code)
    other = _example(task, text="def mean(xs):\n    return sum(xs) / len(xs)")
    assert pools.few_shot(task, "good", 2, away_from=code) == [other]
    assert set(pools.few_shot(task, "good", 2)) == {twin, other}


def test_seed_examples_are_varied_and_correct(db):
    from curation.catalog import SEED_EXAMPLES, ensure_catalog

    ensure_catalog()  # a second time: nothing is added twice
    for slug, seeds in SEED_EXAMPLES.items():
        pool = PoolExample.objects.filter(task__slug=slug, origin="seed")
        assert pool.count() == len(seeds) == 3
        assert len({e.output for e in pool}) == 3 and all(e.source_code for e in pool)
    for seed in SEED_EXAMPLES["generation"] + SEED_EXAMPLES["repair"]:
        exec(compile(seed["output"] + "\n" + seed["tests"], "seed", "exec"), {})  # our own code
    for seed in SEED_EXAMPLES["repair"]:
        try:
            exec(compile(seed["input"] + "\n" + seed["tests"], "buggy seed", "exec"), {})
        except (AssertionError, IndexError):
            continue
        raise AssertionError(f"the tests do not catch the bug of {seed['instruction']!r}")


def test_seeds_no_longer_shipped_are_retired_unless_pinned(db):
    from curation.catalog import ensure_catalog

    task = CodeTask.objects.get(slug="repair")
    old = _example(task, text="def old(x):\n    return x")
    kept = _example(task, text="def kept(x):\n    return x")
    PoolExample.objects.filter(pk__in=[old.pk, kept.pk]).update(origin="seed", instruction="an old seed")
    PoolExample.objects.filter(pk=kept.pk).update(pinned=True, instruction="a pinned old seed")
    ensure_catalog()
    old.refresh_from_db()
    kept.refresh_from_db()
    assert old.removed and not kept.removed
    shipped = PoolExample.objects.filter(task=task, origin="seed", removed=False).exclude(pk=kept.pk)
    assert shipped.count() == 3
