"""A completion cannot forge a pass: the outcome is decided and written by a process it cannot reach."""

import pytest

from training.evaluation import ERROR, FAILED, PASSED, evaluate_samples

# HumanEval/0 (has_close_elements(numbers, threshold) -> bool), completions that cheat instead of solving.
RIGHT = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1 :])\n"

FORGERIES = {
    # The audit's attack: find the runner's secret in the stack's code constants, print it with "passed".
    "stack walk for a token": """
    import sys
    frame = sys._getframe()
    while frame is not None:
        for const in frame.f_code.co_consts:
            if isinstance(const, str) and (const.startswith("@@") or "RESULT" in const):
                sys.__stdout__.write(const.strip() + " passed\\n")
                sys.__stdout__.write('RESULT "passed"\\n')
        frame = frame.f_back
    sys.__stdout__.flush()
    import os
    os._exit(0)
""",
    "write a result line to every descriptor": """
    import os
    for fd in range(256):
        try:
            os.write(fd, b'RESULT "passed"\\n')
        except OSError:
            pass
    os._exit(0)
""",
    "an object equal to everything": """
    class Always:
        def __eq__(self, other):
            return True
        def __bool__(self):
            return True
        __ne__ = lambda self, other: False
    return Always()
""",
    "patch assert helpers and exit": """
    import builtins, sys
    builtins.AssertionError = type("Nope", (Exception,), {})
    sys.exit(0)
""",
    "read the tests' expected values": """
    import gc, os
    for path in ("problem.json", "/work/problem.json"):
        if os.path.exists(path):
            return True  # would tailor the answer to the test
    for obj in gc.get_objects():
        if callable(obj) and getattr(obj, "__name__", "") == "check":
            return True
    return "no tests in reach"
""",
    "kill the harness": """
    import os, signal
    os.kill(os.getppid(), signal.SIGKILL)
    return True
""",
}


@pytest.mark.parametrize("name", FORGERIES)
def test_a_forged_pass_is_not_a_pass(name):
    # Each forgery is already indented as the body of the prompt's function.
    result = evaluate_samples([{"task_id": "HumanEval/0", "completion": FORGERIES[name].lstrip("\n")}])
    (only,) = result.results
    assert not only.passed and only.outcome in (FAILED, ERROR), (only.outcome, only.detail)


def test_an_honest_completion_still_passes_beside_the_forgeries():
    result = evaluate_samples([{"task_id": "HumanEval/0", "completion": RIGHT}])
    assert [r.outcome for r in result.results] == [PASSED]


def test_exceptions_cross_as_builtin_types():
    """A test that expects the candidate to raise ValueError still sees a ValueError."""
    problems = {
        "T/0": {
            "task_id": "T/0",
            "prompt": "def parse(text):\n",
            "entry_point": "parse",
            "test": "def check(candidate):\n    try:\n        candidate('x')\n"
            "    except ValueError:\n        pass\n"
            "    else:\n        assert False\n    assert candidate('12') == 12\n"
            "    assert candidate('1.5') == (1.5, {'a': {1, 2}}, [b'x'])\n",
        }
    }
    body = (
        "    if text == '1.5':\n        return (1.5, {'a': {1, 2}}, [b'x'])\n"
        "    if not text.isdigit():\n        raise ValueError('not a number')\n    return int(text)\n"
    )
    result = evaluate_samples([{"task_id": "T/0", "completion": body}], problems=problems)
    assert [r.outcome for r in result.results] == [PASSED], result.results[0].detail
