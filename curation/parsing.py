"""Reading LLM replies: a JSON object when the model gave one, labelled plain-text sections otherwise.

Nothing here raises anything but ParseError, whatever the text: LLM garbage is recorded, never a crash.
"""

from __future__ import annotations

import json
import re


class ParseError(ValueError):
    """The reply could not be read; the message says why, for the instance's failure field."""


_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n?(.*?)```", re.S)


def first_json_object(text: str) -> dict | None:
    """The first decodable JSON object in the text (inside a code fence or not), else None."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = decoder.raw_decode(candidate, start)
            except json.JSONDecodeError:
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    return None


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(_as_text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _fenced_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the fenced code blocks, an unclosed last one running to the end."""
    spans, opened, offset = [], None, 0
    for line in text.splitlines(keepends=True):
        if line.lstrip().startswith("```"):
            if opened is None:
                opened = offset
            else:
                spans.append((opened, offset + len(line)))
                opened = None
        offset += len(line)
    if opened is not None:
        spans.append((opened, len(text)))
    return spans


def _sections(text: str, fields: list[str]) -> dict[str, str]:
    """`Instruction: …` / `### Instruction` / `**Instruction**:` sections, keyed by lower-case field.
    A header-like line inside a code block (`# output the result`) is code, not a header."""
    names = "|".join(re.escape(f) for f in fields)
    header = re.compile(rf"^\s*(?:#+\s*|\*\*)?({names})(?:\*\*)?\s*:?\s*(?:\*\*)?\s*:?", re.I | re.M)
    spans = _fenced_spans(text)
    found = [m for m in header.finditer(text) if not any(a < m.start() < b for a, b in spans)]
    out: dict[str, str] = {}
    for n, match in enumerate(found):
        end = found[n + 1].start() if n + 1 < len(found) else len(text)
        body = text[match.end() : end].strip()
        fenced = _FENCE.search(body)
        if fenced is None and body.startswith("```"):  # an unclosed block: a reply cut off at its end
            body = body.split("\n", 1)[1] if "\n" in body else ""
        out.setdefault(match.group(1).lower(), (fenced.group(1) if fenced else body).strip())
    return out


def parse_fields(text: str, fields: list[str], required: list[str]) -> dict[str, str]:
    """Read the given string fields from a reply, JSON first then sections. ParseError when a required
    field is missing or empty."""
    if not text or not text.strip():
        raise ParseError("the reply is empty")
    obj = first_json_object(text)
    lowered = {str(k).lower(): v for k, v in obj.items()} if obj is not None else {}
    if any(f in lowered for f in fields):  # not a dict literal inside a code section
        values = {f: _as_text(lowered.get(f)).strip() for f in fields}
        how = "JSON"
    else:
        values = {f: "" for f in fields} | _sections(text, fields)
        how = "plain-text"
    missing = [f for f in required if not values.get(f)]
    if missing:
        raise ParseError(f"{how} reply lacks {', '.join(missing)}")
    return values


def with_evidence(reason: str, evidence: str) -> str:
    """A rule's reason with the words of the instance the judge quoted for it, if any."""
    if not evidence:
        return reason
    return f'{reason} (quoted: "{evidence}")' if reason else f'(quoted: "{evidence}")'


def parse_judgement(text: str, rule_ids: list[str]) -> tuple[dict[str, tuple[bool, str]], bool | None, str]:
    """Read a discriminator reply: per rule (yes?, reason), the overall answer (None if absent), reasons.

    JSON shapes: {"<rule_id>": {"evidence", "reason", "answer"}, …, "overall": "yes|no", "reasons": "…"}
    (what the discriminator's schema asks for; the quoted evidence is kept with the reason) or
    {"rules": [{"id", "answer", "reason"}], "overall", "reasons"}.
    Plain text: one line per rule, `rule_id: yes — reason`, then `overall: no — reasons`.
    ParseError when any rule has no yes/no answer.
    """
    if not text or not text.strip():
        raise ParseError("the reply is empty")
    answers: dict[str, tuple[bool, str]] = {}
    overall: bool | None = None
    reasons = ""
    obj = first_json_object(text)
    if obj is not None:
        rules = obj.get("rules")
        items = (
            rules
            if isinstance(rules, list)
            else [
                {"id": k, **(v if isinstance(v, dict) else {"answer": v})}
                for k, v in obj.items()
                if k in rule_ids
            ]
        )
        for item in items:
            if not isinstance(item, dict):
                continue
            answer = _yes_no(_as_text(item.get("answer")))
            rule_id = _as_text(item.get("id")).strip()
            if rule_id in rule_ids and answer is not None:
                reason = _as_text(item.get("reason")).strip()
                evidence = _as_text(item.get("evidence")).strip()
                answers[rule_id] = (answer, with_evidence(reason, evidence))
        overall = _yes_no(_as_text(obj.get("overall")))
        reasons = _as_text(obj.get("reasons")).strip()
    else:
        for line in text.splitlines():
            match = re.match(r"^\W*([A-Za-z_][\w]*)\W*[:=-]\s*\W*(yes|no)\b\W*(.*)$", line.strip(), re.I)
            if not match:
                continue
            key, answer, reason = match.group(1), match.group(2).lower() == "yes", match.group(3).strip()
            if key in rule_ids:
                answers.setdefault(key, (answer, reason))
            elif key.lower() == "overall":
                overall, reasons = answer, reason
    if any(r not in answers for r in rule_ids):
        salvaged, salvaged_overall, _ = _salvage_judgement(text, rule_ids)
        answers = salvaged | answers
        overall = overall if overall is not None else salvaged_overall
    missing = [r for r in rule_ids if r not in answers]
    if missing:
        raise ParseError(f"no yes/no answer for rule(s) {', '.join(missing)}")
    return answers, overall, reasons


_RULE_OBJECT = re.compile(
    r'"(?P<id>\w+)"\s*:\s*\{\s*(?:"reason"\s*:\s*"(?P<r1>(?:[^"\\]|\\.)*)"\s*,\s*)?'
    r'"answer"\s*:\s*"(?P<answer>yes|no)"(?:\s*,\s*"reason"\s*:\s*"(?P<r2>(?:[^"\\]|\\.)*)")?',
    re.I,
)
_OVERALL = re.compile(r'"overall"\s*:\s*"(yes|no)"', re.I)


def _salvage_judgement(text: str, rule_ids: list[str]):
    """Per-rule answers from JSON that broke off (a small model rambling past its token limit): every
    complete `"rule": {"reason": …, "answer": …}` object before the break still counts."""
    answers: dict[str, tuple[bool, str]] = {}
    for match in _RULE_OBJECT.finditer(text):
        if match.group("id") in rule_ids:
            reason = match.group("r1") or match.group("r2") or ""
            answers.setdefault(match.group("id"), (match.group("answer").lower() == "yes", reason))
    overall = _OVERALL.search(text)
    return answers, (overall.group(1).lower() == "yes") if overall else None, ""


def _yes_no(value: str) -> bool | None:
    word = value.strip().lower().strip(".!\"' ")
    if word in {"yes", "y", "true", "pass", "passed"}:
        return True
    if word in {"no", "n", "false", "fail", "failed"}:
        return False
    return None
