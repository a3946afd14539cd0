"""Reading LLM replies: JSON, fenced JSON, plain-text sections; garbage is a ParseError, never a crash."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from curation.parsing import ParseError, parse_fields, parse_judgement

FIELDS = ["instruction", "input", "output", "tests"]
REQUIRED = ["instruction", "input", "output"]


def test_plain_json():
    text = '{"instruction": "Summarize it.", "input": "x = 1", "output": "Sets x.", "tests": ""}'
    assert parse_fields(text, FIELDS, REQUIRED)["output"] == "Sets x."


def test_json_in_a_code_fence_with_chatter():
    text = (
        'Sure! Here it is:\n```json\n{"instruction": "Do it.", "input": "a", "output": "b"}\n```\n'
        "Hope it helps."
    )
    values = parse_fields(text, FIELDS, REQUIRED)
    assert (values["instruction"], values["tests"]) == ("Do it.", "")


def test_json_keys_case_insensitive_and_lists_joined():
    text = '{"Instruction": "Do it.", "INPUT": "a", "output": "b", "tests": ["assert f(1)", "assert f(2)"]}'
    assert parse_fields(text, FIELDS, REQUIRED)["tests"] == "assert f(1)\nassert f(2)"


def test_plain_text_sections():
    text = (
        "### Instruction\nWrite documentation for the Python function.\n"
        "### Input\n```python\ndef f():\n    return 1\n```\n"
        "**Output**: Returns one.\n"
    )
    values = parse_fields(text, FIELDS, REQUIRED)
    assert values["input"] == "def f():\n    return 1"
    assert values["output"] == "Returns one."


def test_missing_required_field_is_a_parse_error():
    with pytest.raises(ParseError, match="lacks output"):
        parse_fields('{"instruction": "Do it.", "input": "a"}', FIELDS, REQUIRED)


@pytest.mark.parametrize(
    "text", ["", "   ", '{"instruction": "Do it", "input": "a", "outp', "I cannot help."]
)
def test_garbage_is_a_parse_error(text):
    with pytest.raises(ParseError):
        parse_fields(text, FIELDS, REQUIRED)


@given(st.text(max_size=300))
def test_never_raises_anything_but_parse_error(text):
    try:
        parse_fields(text, FIELDS, REQUIRED)
    except ParseError:
        pass
    try:
        parse_judgement(text, ["a", "b"])
    except ParseError:
        pass


def test_judgement_json():
    text = (
        '{"rules": [{"id": "a", "answer": "yes", "reason": "fine"}, '
        '{"id": "b", "answer": "No", "reason": "bad"}],'
        ' "overall": "no", "reasons": "b fails"}'
    )
    answers, overall, reasons = parse_judgement(text, ["a", "b"])
    assert answers == {"a": (True, "fine"), "b": (False, "bad")}
    assert (overall, reasons) == (False, "b fails")


def test_judgement_json_mapping_form():
    answers, overall, _ = parse_judgement('{"a": "yes", "b": {"answer": "no", "reason": "x"}}', ["a", "b"])
    assert answers == {"a": (True, ""), "b": (False, "x")}
    assert overall is None


def test_judgement_plain_lines():
    text = "a: yes - it names Python\n- b: NO — imports missing\nOverall: no - b fails"
    answers, overall, reasons = parse_judgement(text, ["a", "b"])
    assert answers["b"] == (False, "imports missing")
    assert overall is False and reasons == "b fails"


def test_judgement_missing_rule_is_a_parse_error():
    with pytest.raises(ParseError, match="rule"):
        parse_judgement('{"rules": [{"id": "a", "answer": "yes", "reason": ""}]}', ["a", "b"])


def test_judgement_salvaged_from_json_that_broke_off():
    text = (
        '{ "a": { "reason": "Python 3.10", "answer": "no"}, "b": {"answer": "yes", "reason": "ok"}, '
        '"overall": "no", "reasons": "### 1. no, no, no, no, no, no, no, no'
    )
    answers, overall, _ = parse_judgement(text, ["a", "b"])
    assert answers == {"a": (False, "Python 3.10"), "b": (True, "ok")}
    assert overall is False


def test_judgement_cut_before_a_rule_is_still_an_error():
    with pytest.raises(ParseError, match="b"):
        parse_judgement('{ "a": { "reason": "x", "answer": "no"}, "b": { "reason": "and then', ["a", "b"])


def test_sections_with_code_that_looks_like_headers_or_json():
    reply = (
        "### instruction\nWrite a Python function `tally(words)`.\n\n"
        "### output\n```python\ndef tally(words):\n    # output: a dict of counts\n    counts = {}\n"
        "    for w in words:\n        counts[w] = counts.get(w, 0) + 1\n    return counts\n```\n\n"
        "### tests\n```python\nassert tally(['a', 'a']) == {'a': 2}\n"
    )
    values = parse_fields(reply, ["instruction", "input", "output", "tests"], ["instruction", "output"])
    assert values["instruction"] == "Write a Python function `tally(words)`."
    # A comment naming a field is code, `{}` is not a JSON reply, and a block cut off at the end is kept.
    assert "# output: a dict of counts" in values["output"] and values["output"].endswith("return counts")
    assert values["tests"] == "assert tally(['a', 'a']) == {'a': 2}"


def test_the_judges_quoted_evidence_is_kept_with_its_reason():
    reply = (
        '{"names_language": {"evidence": "Write a Python function", "reason": "It says Python.", '
        '"answer": "yes"}, "concise": {"evidence": "", "reason": "Five lines of prose.", "answer": "no"}, '
        '"overall": "no", "reasons": "too long"}'
    )
    answers, overall, _ = parse_judgement(reply, ["names_language", "concise"])
    assert answers["names_language"] == (True, 'It says Python. (quoted: "Write a Python function")')
    assert answers["concise"] == (False, "Five lines of prose.") and overall is False
