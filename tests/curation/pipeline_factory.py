"""A tiny corpus with a finished selection, for generation tests (the stub's answers: tests/fakes)."""

import hashlib

from curation.models import CodeSample, CodeSource, SelectionPick, SelectionRun
from tests.curation.corpus_factory import FUNCTIONS


def make_selection(n: int = 4) -> SelectionRun:
    source = CodeSource.objects.create(name="fixture", kind="directory", location="/fixture")
    run = SelectionRun.objects.create(
        k=n, model_name="fake", status=SelectionRun.Status.SUCCEEDED, pool_size=n
    )
    for rank, code in enumerate(FUNCTIONS[:n]):
        sample = CodeSample.objects.create(
            source=source,
            language="python",
            code=code,
            n_chars=len(code),
            content_hash=hashlib.sha256(code.encode()).hexdigest(),
            minhash=b"",
            path="mathy.py",
        )
        SelectionPick.objects.create(run=run, sample=sample, rank=rank, distance=1.0)
    return run
