"""Runs sandbox payloads for the escape suite as another (ordinary) user: JSON in on stdin, out on stdout.

Started by tests/curation/test_sandbox_escapes.py with the system's Python and no Django settings, so
it exercises `curation.sandbox` exactly as a worker running under an unprivileged account would.
"""

import dataclasses
import json
import os
import sys

sys.path.insert(0, os.environ["WAVECODER_PROJECT"])

from curation import sandbox  # noqa: E402


def main() -> None:
    payloads = json.load(sys.stdin)
    results = []
    for payload in payloads:
        result = sandbox.run_python(
            payload["code"], audit_hook=payload["audit_hook"], timeout_s=payload["timeout_s"]
        )
        results.append(dataclasses.asdict(result))
    json.dump({"uid": os.getuid(), "problem": sandbox.availability_problem(), "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
