"""Static checks run before the discriminator: they need no LLM and must catch the cheap failures."""

import pytest

from curation.checks import count_sentences, first_failure, run_static_checks


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("Write a function.", 1),
        ("Write a Python function that sums a list", 1),
        ("Write a function. Use os.path.join to build the path.", 2),
        ("Use version 3.5 of `x.y()`. Then test it. Then ship it.", 3),
        ("", 0),
    ],
)
def test_count_sentences(text, n):
    assert count_sentences(text) == n


def _check(**overrides):
    fields = {
        "task": "generation",
        "instruction": "Write a Python function that adds two numbers.",
        "input": "",
        "output": "def add(a, b):\n    return a + b",
        "language": "python",
    } | overrides
    return run_static_checks(**fields)


def test_good_generation_instance_passes():
    assert first_failure(_check()) is None


def test_missing_output_fails_required_fields():
    assert first_failure(_check(output=" ")).name == "required_fields"


def test_summarization_needs_an_input():
    failure = first_failure(_check(task="summarization", output="Adds two numbers.", input=""))
    assert failure.name == "required_fields"


def test_three_sentence_instruction_fails():
    failure = first_failure(_check(instruction="Write a function. It adds. It is fast."))
    assert failure.name == "instruction_length"
    assert "3 sentences" in failure.detail


def test_python_output_must_parse():
    failure = first_failure(_check(output="def add(a, b)\n    return a + b"))
    assert failure.name == "output_parses"
    assert "line 1" in failure.detail


def test_non_python_code_is_not_parsed_as_python():
    assert first_failure(_check(language="go", output="func add(a int, b int) int { return a + b }")) is None


def test_repair_must_change_the_code():
    code = "def add(a, b):\n    return a - b"
    failure = first_failure(
        _check(
            task="repair",
            instruction="Fix the bug in this Python function.",
            input=code,
            output=code + "\n\n",
        )
    )
    assert failure.name == "repair_changes_code"


def test_repair_that_changes_code_passes():
    results = _check(
        task="repair",
        instruction="Fix the bug in this Python function.",
        input="def add(a, b):\n    return a - b",
        output="def add(a, b):\n    return a + b",
    )
    assert first_failure(results) is None


def test_translation_output_parsed_in_target_language():
    results = _check(
        task="translation",
        instruction="Translate this JavaScript function into Python.",
        input="function add(a, b) { return a + b; }",
        output="def add(a, b) return a + b",
        language="javascript",
        target_language="python",
    )
    assert first_failure(results).name == "output_parses"


def test_translation_target_must_differ():
    results = _check(
        task="translation",
        instruction="Translate this function.",
        input="def f():\n    pass",
        output="def f():\n    pass",
        target_language="python",
    )
    assert first_failure(results).name == "translation_target"


@pytest.mark.parametrize(
    ("instruction", "target", "named"),
    [
        ("Translate this Python function into JavaScript.", "javascript", True),
        ("Rewrite it in Go, keeping its behaviour.", "go", True),
        ("Port this function to C++.", "cpp", True),
        ("Translate this Python function into JavaScript.", "java", False),
        ("Translate this Python function into another language.", "rust", False),
    ],
)
def test_a_translation_instruction_must_name_its_target(instruction, target, named):
    results = _check(
        task="translation",
        instruction=instruction,
        input="def add(a, b):\n    return a + b",
        output="fn add(a: i32, b: i32) -> i32 { a + b }",
        target_language=target,
    )
    check = next(r for r in results if r.name == "instruction_names_target")
    assert check.passed is named
    if not named:
        assert check.detail == f"the instruction must name the target language, {target}"


def test_asserts_must_parse():
    failure = first_failure(_check(tests="assert add(1, 2) returns 3"))
    assert failure.name == "tests_parses"
    assert first_failure(_check(tests="assert add(1, 2) == 3")) is None


def test_tests_may_only_call_what_the_output_defines():
    failure = first_failure(_check(tests="assert add(1, 2) == 3\nassert subtract(3, 1) == 2"))
    assert failure.name == "tests_call_output" and "`subtract`" in failure.detail
    # Builtins, and names the tests define or import themselves, are fine.
    assert first_failure(_check(tests="import math\nassert add(len([1]), math.floor(1.5)) == 2")) is None


def test_a_generation_solution_is_no_method_cut_out_of_its_class():
    failure = first_failure(_check(output="def area(self):\n    return self.w * self.h"))
    assert failure.name == "output_standalone" and "`area`" in failure.detail
    # Methods inside a class the output includes are fine.
    assert first_failure(_check(output="class R:\n    def area(self):\n        return 1\n")) is None
