"""KCenterGreedy against a float64 reference, the coverage radius, and the selection stage end to end."""

import hashlib
import zlib

import numpy as np
import pytest

from curation import embeddings
from curation.models import CodeSample, CodeSource, EmbeddingSet, SelectionPick, SelectionRun
from curation.selection import (
    coverage_radius,
    create_selection_run,
    kcenter_coreset,
    kcenter_greedy,
    kcenter_greedy_naive,
    run_selection,
)

# --- kcenter_greedy ---------------------------------------------------------------------------


def _gaussian(n, d, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


def _blobs(n, d, centers, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centers, d)) * 10
    return (means[rng.integers(centers, size=n)] + rng.standard_normal((n, d)) * 0.1).astype(np.float32)


def _with_duplicates(seed=0):
    rows = _gaussian(40, 6, seed)
    return np.repeat(rows, 3, axis=0)[np.random.default_rng(seed).permutation(120)]


def _lattice():
    # Integer points: very many exactly equal distances, so the tie rule decides most picks.
    return np.indices((5, 5, 4)).reshape(3, -1).T.astype(np.float32)


def _brute_min_distances(X, centers):
    X = np.asarray(X, dtype=np.float64)
    diff = X[:, None, :] - X[centers][None, :, :]
    return np.sqrt((diff * diff).sum(axis=-1)).min(axis=1)


DATASETS = {
    "gaussian": lambda: _gaussian(500, 16, seed=1),
    "wide": lambda: _gaussian(300, 384, seed=2),
    "blobs": lambda: _blobs(600, 32, centers=12, seed=3),
    "duplicates": _with_duplicates,
    "lattice": _lattice,
    "float16": lambda: _gaussian(400, 24, seed=4, dtype=np.float16),
    "float64": lambda: _gaussian(400, 24, seed=5, dtype=np.float64),
    "huge": lambda: _gaussian(300, 16, seed=7) * np.float32(1e18),  # squares overflow float32
    "tiny": lambda: _gaussian(300, 16, seed=8) * np.float32(1e-20),  # squares underflow float32
    "normalized": lambda: (lambda X: X / np.linalg.norm(X, axis=1, keepdims=True))(_gaussian(500, 48, 6)),
}


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("seed", [0, 7])
@pytest.mark.parametrize("compare_in", ["float64", "float32"])
def test_picks_match_the_reference(name, seed, compare_in):
    X = DATASETS[name]()
    k = min(len(X), 60)
    fast = kcenter_greedy(X, k, seed=seed, compare_in=compare_in)
    assert np.array_equal(fast, kcenter_greedy_naive(X, k, seed=seed, compare_in=compare_in))


def _wavecoder_loop(X, k, first):
    """The WaveCoder repository's loop: sklearn distances to each new center, running minimum, argmax."""
    from sklearn.metrics import pairwise_distances

    picks, min_distances = [first], None
    for _ in range(k - 1):
        dist = pairwise_distances(X, X[[picks[-1]]], metric="euclidean")
        min_distances = dist if min_distances is None else np.minimum(min_distances, dist)
        picks.append(int(np.argmax(min_distances)))
    return picks


def test_float32_comparison_reproduces_the_wavecoder_loop_at_near_ties():
    # Row 2 is farther from row 0 than row 1 by 4.8e-8 (relative): below float32 resolution.
    X = np.array([[0, 0], [1, 0], [0.6, 0.8]], dtype=np.float32)
    assert kcenter_greedy(X, 2, first=0).tolist() == [0, 2]  # exact
    assert kcenter_greedy(X, 2, first=0, compare_in="float32").tolist() == [0, 1] == _wavecoder_loop(X, 2, 0)
    X = _gaussian(2000, 64, seed=9)
    assert kcenter_greedy(X, 100, first=3, compare_in="float32").tolist() == _wavecoder_loop(X, 100, 3)


@pytest.mark.parametrize("name", ["duplicates", "lattice", "gaussian"])
def test_k_equal_to_n_picks_every_row_in_reference_order(name):
    X = DATASETS[name]()
    picks = kcenter_greedy(X, len(X), seed=3)
    assert sorted(picks.tolist()) == list(range(len(X)))
    assert np.array_equal(picks, kcenter_greedy_naive(X, len(X), seed=3))


def test_returns_k_distinct_int64_indices_even_when_rows_repeat():
    X = np.repeat(_gaussian(5, 4), 10, axis=0)  # only 5 distinct rows
    picks = kcenter_greedy(X, 30, seed=1)
    assert picks.dtype == np.int64 and picks.shape == (30,)
    assert len(set(picks.tolist())) == 30


def test_first_and_seed():
    X = _gaussian(1000, 8)
    assert kcenter_greedy(X, 5, first=123)[0] == 123
    assert kcenter_greedy(X, 5, seed=11)[0] == np.random.default_rng(11).integers(1000)
    assert kcenter_greedy(X, 5, seed=0)[0] != kcenter_greedy(X, 5, seed=1)[0]
    assert np.array_equal(kcenter_greedy(X, 40, seed=5), kcenter_greedy(X, 40, seed=5))


def test_distances_are_the_greedy_objective_at_pick_time():
    X = _blobs(400, 16, centers=6, seed=1)
    coreset = kcenter_coreset(X, 25, seed=2)
    assert np.isnan(coreset.distances[0])
    for t in range(1, 25):
        expected = _brute_min_distances(X, coreset.indices[:t])[coreset.indices[t]]
        assert coreset.distances[t] == pytest.approx(expected, rel=1e-9)
    # Farthest-first: each pick is no farther than the one before.
    assert np.all(np.diff(coreset.distances[1:]) <= 1e-12)


def test_memory_mapped_and_non_contiguous_inputs(tmp_path):
    X = _gaussian(300, 20, seed=8)
    np.save(tmp_path / "x.npy", X)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    expected = kcenter_greedy_naive(X, 30, seed=1)
    assert np.array_equal(kcenter_greedy(mapped, 30, seed=1), expected)
    assert np.array_equal(kcenter_greedy(np.asfortranarray(X), 30, seed=1), expected)
    wide = np.ascontiguousarray(np.repeat(X, 2, axis=1))
    assert np.array_equal(kcenter_greedy(wide[:, ::2], 30, seed=1), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_the_torch_path_matches_too(monkeypatch, dtype):
    """The CUDA code path, run with torch on the CPU (CI has no GPU): same picks as the reference."""
    from curation import selection

    def torch_on_cpu(X, sq, dtype):
        return selection._DeviceDistances(X, sq, dtype, "cpu")

    monkeypatch.setattr(selection, "_HostDistances", torch_on_cpu)
    X = np.concatenate([_blobs(300, 24, centers=5, seed=2), _with_duplicates()[:, :1].repeat(24, axis=1)])
    X = X.astype(dtype)
    assert np.array_equal(kcenter_greedy(X, 80, seed=4, device="cpu"), kcenter_greedy_naive(X, 80, seed=4))


def test_on_pick_counts_up_to_k():
    seen = []
    kcenter_greedy(_gaussian(50, 4), 7, on_pick=seen.append)
    assert seen == [1, 2, 3, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("X", "k", "kwargs", "message"),
    [
        (np.zeros((5, 2)), 0, {}, "at least 1"),
        (np.zeros((5, 2)), 6, {}, "larger than the number of rows"),
        (np.zeros((5, 2)), 2.5, {}, "integer"),
        (np.zeros(5), 1, {}, "2-D"),
        (np.zeros((2, 2, 2)), 1, {}, "2-D"),
        (np.zeros((0, 3)), 1, {}, "at least one row"),
        (np.zeros((5, 2)), 2, {"first": 5}, "first"),
        (np.zeros((5, 2)), 2, {"first": -1}, "first"),
        (np.array([[0.0, 1.0], [np.nan, 0.0]]), 1, {}, "NaN"),
        (np.array([[0.0, 1.0], [np.inf, 0.0]]), 1, {}, "NaN or infinite"),
        (np.zeros((5, 2)), 2, {"compare_in": "float16"}, "compare_in"),
    ],
)
def test_invalid_input_is_refused(X, k, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kcenter_greedy(X, k, **kwargs)
    with pytest.raises(ValueError, match=message):
        kcenter_greedy_naive(X, k, **kwargs)


# --- coverage_radius --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gaussian", "blobs", "duplicates", "float16"])
def test_coverage_radius_matches_brute_force(name):
    X = DATASETS[name]()
    centers = np.random.default_rng(0).choice(len(X), size=17, replace=False)
    assert coverage_radius(X, centers) == pytest.approx(_brute_min_distances(X, centers).max(), rel=1e-12)


def test_coverage_radius_of_greedy_picks_is_the_next_greedy_distance():
    X = _gaussian(300, 10, seed=3)
    coreset = kcenter_coreset(X, 21, seed=0)
    assert coverage_radius(X, coreset.indices[:20]) == pytest.approx(coreset.distances[20], rel=1e-12)
    assert coverage_radius(X, np.arange(len(X))) == 0.0


def test_coverage_radius_validates_centers():
    X = _gaussian(10, 3)
    with pytest.raises(ValueError, match="empty"):
        coverage_radius(X, [])
    with pytest.raises(ValueError, match="row indices"):
        coverage_radius(X, [3, 10])


# --- The stage --------------------------------------------------------------------------------


class HashingEmbedder:
    """Bag of tokens: each token gets a fixed random direction; a text is the normalized sum.

    Samples that share most tokens are close, so clustered code gives clustered vectors.
    """

    def __init__(self, dim=32, name="fake-hashing"):
        self.name, self.dim = name, dim
        self.encoded: list[str] = []

    def encode(self, texts, *, batch_size, on_batch=None):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for token in text.split():
                out[row] += np.random.default_rng(zlib.crc32(token.encode())).standard_normal(self.dim)
            if on_batch and (row + 1) % batch_size == 0:
                on_batch(batch_size)
        if on_batch and len(texts) % batch_size:
            on_batch(len(texts) % batch_size)
        self.encoded.extend(texts)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def fake_embedder(monkeypatch, settings, tmp_path):
    settings.EMBEDDINGS_DIR = tmp_path / "embeddings"
    fake = HashingEmbedder()
    monkeypatch.setattr(embeddings, "get_embedder", lambda name=None: fake)
    return fake


CLUSTER_WORDS = ["parse", "socket", "matrix", "sql", "regex", "thread", "image", "crypto"]


def _make_samples(clusters=8, per_cluster=10, language="python", start=0):
    source, _ = CodeSource.objects.get_or_create(name="tests", kind="directory", location="/tmp/tests")
    rows = []
    for c in range(clusters):
        word = CLUSTER_WORDS[c]
        body = " ".join(f"{word}_{j}" for j in range(12))
        for i in range(start, start + per_cluster):
            code = f"def {word}_{i}(x): {body} item_{word}_{i}"
            rows.append(
                CodeSample(
                    source=source,
                    language=language,
                    code=code,
                    docstring=f"{word} helper",
                    n_chars=len(code),
                    content_hash=hashlib.sha256(f"{language}:{code}".encode()).hexdigest(),
                    minhash=b"",
                )
            )
    return CodeSample.objects.bulk_create(rows)


def _cluster_of(sample):
    return sample.code.split("_")[0].removeprefix("def ")


@pytest.mark.django_db
def test_create_selection_run_validates():
    with pytest.raises(ValueError, match="no code samples"):
        create_selection_run(k=3)
    _make_samples(clusters=1, per_cluster=4)
    with pytest.raises(ValueError, match="positive integer"):
        create_selection_run(k=0)
    with pytest.raises(ValueError, match="larger than the pool"):
        create_selection_run(k=5)
    with pytest.raises(ValueError, match="no code samples in go"):
        create_selection_run(k=1, languages=["go"])
    run = create_selection_run(k=4, seed=3, languages=[" python ", "python"])
    assert (run.status, run.k, run.seed, run.languages) == (SelectionRun.Status.QUEUED, 4, 3, ["python"])
    assert run.model_name == "all-MiniLM-L6-v2"


@pytest.mark.django_db
def test_run_selection_end_to_end(fake_embedder, settings):
    _make_samples()
    run = create_selection_run(k=8, seed=1, model_name="fake-hashing")
    phases = set()
    run = run_selection(run.pk, on_progress=lambda phase, done, total: phases.add(phase))

    assert run.status == SelectionRun.Status.SUCCEEDED, run.error
    assert phases == {"embedding", "selecting", "radius"}
    assert run.pool_size == 80 and len(fake_embedder.encoded) == 80
    picks = list(SelectionPick.objects.filter(run=run).select_related("sample").order_by("rank"))
    assert [p.rank for p in picks] == list(range(8))
    assert picks[0].distance is None and all(p.distance > 0 for p in picks[1:])
    # On clustered data the greedy takes one sample per cluster, and covers far better than chance.
    assert {_cluster_of(p.sample) for p in picks} == set(CLUSTER_WORDS)
    assert run.coverage_radius < run.random_radius

    # The stored order is exactly kcenter_greedy's over the stored vectors.
    eset = run.embedding_set
    ids = np.load(settings.EMBEDDINGS_DIR / eset.ids_file)
    vectors = np.load(settings.EMBEDDINGS_DIR / eset.vectors_file, mmap_mode="r")
    assert (eset.count, eset.dim, vectors.dtype) == (80, 32, np.float32)
    expected = ids[kcenter_greedy_naive(vectors, 8, seed=1)]
    assert [p.sample_id for p in picks] == expected.tolist()


@pytest.mark.django_db
def test_embeddings_are_reused_and_extended(fake_embedder):
    _make_samples()
    first = run_selection(create_selection_run(k=5, seed=0, model_name="fake-hashing").pk)
    assert len(fake_embedder.encoded) == 80

    second = run_selection(create_selection_run(k=6, seed=1, model_name="fake-hashing").pk)
    assert second.status == SelectionRun.Status.SUCCEEDED
    assert len(fake_embedder.encoded) == 80  # nothing new to embed
    assert second.embedding_set_id == first.embedding_set_id

    new = _make_samples(clusters=2, per_cluster=3, start=100)
    fake_embedder.encoded.clear()
    third = run_selection(create_selection_run(k=6, seed=1, model_name="fake-hashing").pk)
    assert third.status == SelectionRun.Status.SUCCEEDED
    assert sorted(fake_embedder.encoded) == sorted(embeddings.sample_text(s) for s in new)
    assert third.embedding_set.count == 86 and third.pool_size == 86
    assert EmbeddingSet.objects.count() == 2

    # A smaller pool (one language) is covered by the newest set: nothing is embedded.
    _make_samples(clusters=1, per_cluster=3, language="go", start=200)
    fake_embedder.encoded.clear()
    python_only = run_selection(create_selection_run(k=3, model_name="fake-hashing", languages=["python"]).pk)
    assert python_only.status == SelectionRun.Status.SUCCEEDED
    assert python_only.embedding_set_id == third.embedding_set_id and fake_embedder.encoded == []


@pytest.mark.django_db
def test_a_new_set_drops_vectors_of_deleted_samples(fake_embedder, settings):
    samples = _make_samples(clusters=2, per_cluster=5)
    first = run_selection(create_selection_run(k=2, model_name="fake-hashing").pk)
    CodeSample.objects.filter(pk__in=[samples[0].pk, samples[1].pk]).delete()
    _make_samples(clusters=1, per_cluster=3, start=50)
    fake_embedder.encoded.clear()
    second = run_selection(create_selection_run(k=2, model_name="fake-hashing").pk)
    assert second.status == SelectionRun.Status.SUCCEEDED, second.error
    assert len(fake_embedder.encoded) == 3
    ids = np.load(settings.EMBEDDINGS_DIR / second.embedding_set.ids_file)
    assert ids.tolist() == sorted(CodeSample.objects.values_list("id", flat=True))
    # The copied vectors are the ones embedded before.
    old_ids = np.load(settings.EMBEDDINGS_DIR / first.embedding_set.ids_file)
    old = np.load(settings.EMBEDDINGS_DIR / first.embedding_set.vectors_file)
    new = np.load(settings.EMBEDDINGS_DIR / second.embedding_set.vectors_file)
    kept = samples[2].pk
    assert np.array_equal(new[ids.tolist().index(kept)], old[old_ids.tolist().index(kept)])


@pytest.mark.django_db
def test_float16_embedding_files(fake_embedder, settings):
    settings.EMBEDDING_DTYPE = "float16"
    _make_samples(clusters=3, per_cluster=5)
    run = run_selection(create_selection_run(k=3, model_name="fake-hashing").pk)
    assert run.status == SelectionRun.Status.SUCCEEDED, run.error
    assert run.embedding_set.dtype == "float16"
    assert np.load(settings.EMBEDDINGS_DIR / run.embedding_set.vectors_file).dtype == np.float16


@pytest.mark.django_db
def test_failures_are_recorded_on_the_run(fake_embedder, monkeypatch):
    _make_samples(clusters=1, per_cluster=4)
    too_big = SelectionRun.objects.create(k=10, model_name="fake-hashing")
    too_big = run_selection(too_big.pk)
    assert too_big.status == SelectionRun.Status.FAILED
    assert "k=10 is larger than the pool (4 samples)" in too_big.error

    def missing_model(name=None):
        raise ValueError(f"Embedding model {name!r} is not available offline.")

    monkeypatch.setattr(embeddings, "get_embedder", missing_model)
    no_model = run_selection(create_selection_run(k=2, model_name="nope").pk)
    assert no_model.status == SelectionRun.Status.FAILED
    assert "not available offline" in no_model.error
    assert not SelectionPick.objects.filter(run=no_model).exists()


@pytest.mark.django_db
def test_a_finished_run_is_not_run_again(fake_embedder):
    _make_samples(clusters=2, per_cluster=3)
    run = run_selection(create_selection_run(k=2, model_name="fake-hashing").pk)
    fake_embedder.encoded.clear()
    again = run_selection(run.pk)
    assert again.status == SelectionRun.Status.SUCCEEDED and again.finished_at == run.finished_at
    assert fake_embedder.encoded == [] and SelectionPick.objects.filter(run=run).count() == 2
