"""A stub LLM for the refinement loop: a discriminator with one misfiring rule, and a proposer that
removes it. A test double, served by tests/fakes/openai_stub.py."""

import json

from tests.fakes.responders import is_discriminator, responder, rule_ids

PROPOSER_MARK = "You maintain the checklist"


def is_proposal(request: dict) -> bool:
    return PROPOSER_MARK in request["messages"][0]["content"]


def strict_judge(misfiring: str, broken_marker: str = "BROKEN"):
    """Fails `misfiring` whenever the checklist has it, and every rule for outputs marked broken."""

    def answer(request: dict) -> str:
        prompt = request["messages"][-1]["content"]
        instance = prompt.rsplit("The instance to judge:", 1)[-1]
        failing = tuple(rule_ids(request)) if broken_marker in instance else (misfiring,)
        return responder(request, fail_rules=failing)

    return answer


def proposer(drop: str, reword: tuple[str, str] | None = None):
    """Answers a proposal request by keeping every current rule but `drop` (and rewording one)."""

    def answer(request: dict) -> str:
        prompt = request["messages"][-1]["content"]
        checklist = prompt.split("Current checklist", 1)[1].split("\n\nCases", 1)[0]
        rules = []
        for line in checklist.splitlines():
            if line.startswith("- "):
                rule_id, _, question = line[2:].partition(": ")
                if rule_id == drop:
                    continue
                if reword and rule_id == reword[0]:
                    rules.append({"id": rule_id, "question": reword[1], "rationale": "clearer"})
                else:
                    rules.append({"id": rule_id, "question": question, "rationale": "works"})
        return json.dumps(
            {
                "rules": rules,
                "removed": [{"id": drop, "rationale": "reviewers accepted what it rejected"}],
                "summary": f"Dropped {drop}.",
            }
        )

    return answer


def combined(judge, propose):
    def answer(request: dict) -> str:
        if is_proposal(request):
            return propose(request)
        if is_discriminator(request):
            return judge(request)
        return responder(request)

    return answer
