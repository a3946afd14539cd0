"""Bugs the app plants for the repair task, and the self-contained test that generation and repair prefer."""

from __future__ import annotations

import ast

import pytest

from curation import checks
from curation.mutation import plant_bug

WINDOW = '''def window(items, size):
    """Consecutive slices of `size` items.

    >>> window([1, 2, 3], 2)
    """
    # comments and layout survive the mutation
    out = []
    for start in range(len(items) - size + 1):
        if size > 0 and start >= 0:
            out.append(items[start : start + size])
    return out
'''


def _changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    return [(x, y) for x, y in zip(a.split("\n"), b.split("\n"), strict=True) if x != y]


@pytest.mark.parametrize("seed", range(25))
def test_one_token_changes_in_the_body_and_the_rest_stays_byte_for_byte(seed):
    planted = plant_bug(WINDOW, seed)
    assert planted is not None
    changed = _changed_lines(WINDOW, planted.buggy)
    assert len(changed) == 1, changed
    assert changed == [(planted.before, planted.after)]
    assert planted.line > 5, "never in the signature or the docstring's doctest"
    assert "# comments and layout survive" in planted.buggy
    ast.parse(planted.buggy)
    assert ast.dump(ast.parse(planted.buggy)) != ast.dump(ast.parse(WINDOW)), "the behaviour changed"
    assert f"`{planted.after.strip()}` must be `{planted.before.strip()}`" in planted.explanation()


def test_the_same_seed_plants_the_same_bug_and_seeds_spread_over_kinds():
    assert plant_bug(WINDOW, 7) == plant_bug(WINDOW, 7)
    kinds = {plant_bug(WINDOW, seed).kind for seed in range(40)}
    assert {"a wrong comparison", "an off-by-one constant", "a wrong arithmetic operator"} <= kinds


@pytest.mark.parametrize(
    ("code", "before", "after"),
    [
        ("def f(a, b):\n    return a <= b", "a <= b", "a < b"),
        ("def f(a, b):\n    return a is not b", "a is not b", "a is b"),
        ("def f(a, b):\n    return a not in b", "a not in b", "a in b"),
        ("def f(a, b):\n    return a and b", "a and b", "a or b"),
        ("def f(a):\n    return not a", "not a", "a"),
        ("def f(a):\n    return a[2]", "a[2]", "a[3]"),
        # Positions are UTF-8 bytes in ast; the text before the operator is not ASCII.
        ("def f(a):\n    return len('héllo') < a", "len('héllo') < a", "len('héllo') <= a"),
    ],
)
def test_each_kind_of_site_is_changed_where_it_is(code, before, after):
    planted = plant_bug(code, 0)
    assert planted is not None and planted.buggy == code.replace(before, after)


@pytest.mark.parametrize(
    "code",
    [
        "def f(name):\n    return 'Hello ' + name",  # joining text is no arithmetic
        "def f(name):\n    return '%s!' % name",
        "def f():\n    pass",
        "x = 1 + 2",  # no function
        "def f(:\n    return 1",  # does not parse
        "def f(a=1 + 2):\n    return a",  # only a default argument to change
    ],
)
def test_no_bug_where_there_is_no_realistic_site(code):
    assert plant_bug(code, 0) is None


@pytest.mark.parametrize(
    ("code", "alone"),
    [
        ("def f(xs):\n    import math\n    return [math.sqrt(x) for x in xs if x > 0]", True),
        ("def f(xs):\n    try:\n        return max(xs)\n    except ValueError as e:\n        return e", True),
        ("def f(self, x):\n    return x", False),
        ("def f(x):\n    return os.path.join(x)", False),  # needs its module's import
        ("def f(x):\n    return _helper(x)", False),
        ("def f(x:\n", False),
    ],
)
def test_self_contained_code_runs_alone(code, alone):
    assert checks.self_contained(code) is alone
