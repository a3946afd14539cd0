"""Stage 2 of WaveCoder: pick a diverse coreset of the raw code with KCenterGreedy.

KCenterGreedy (Sener & Savarese 2018) starts from one sample and repeatedly adds the sample farthest
(Euclidean) from its nearest chosen sample. Each pick costs one pass over the embedding matrix, so the
algorithm is bound by memory bandwidth; `kcenter_greedy` does the least possible work per pass and
never copies the matrix, while staying exactly as greedy as a float64 reference (see `kcenter_coreset`).

`run_selection` is the stage function that the Celery task, the management command and the views call.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.db import transaction

from curation import embeddings
from curation.models import CodeSample, EmbeddingSet, ProgressReporter, SelectionPick, SelectionRun

logger = logging.getLogger(__name__)

# Temporary blocks are kept near this size: big enough for BLAS to run at full speed, small next to X.
_BLOCK_BYTES = 8 * 1024 * 1024
_U64 = float(np.finfo(np.float64).eps) / 2


class Coreset(NamedTuple):
    """Greedy picks in order, and each pick's distance to the nearest earlier pick (NaN for the first)."""

    indices: np.ndarray
    distances: np.ndarray


# --- Input checks and small helpers -----------------------------------------------------------------


def _as_matrix(X: np.ndarray) -> np.ndarray:
    """X as a 2-D floating array without copying it (a memory map stays a memory map)."""
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array (samples × dimensions), got shape {X.shape}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must have at least one row and one column, got shape {X.shape}.")
    if X.dtype not in (np.float16, np.float32, np.float64):
        # Integers and long doubles are rare here; one float64 copy keeps the rest of the code simple.
        X = X.astype(np.float64)
    return X


def _check_k(k: int, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise ValueError(f"k must be an integer, got {k!r}.")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if k > n:
        raise ValueError(f"k={k} is larger than the number of rows ({n}).")
    return int(k)


def _first_index(n: int, first: int | None, seed: int) -> int:
    """The first center: `first` when given, else drawn by `np.random.default_rng(seed).integers(n)`."""
    if first is None:
        return int(np.random.default_rng(seed).integers(n))
    if isinstance(first, bool) or not isinstance(first, int | np.integer) or not 0 <= first < n:
        raise ValueError(f"first must be a row index in [0, {n}), got {first!r}.")
    return int(first)


def _check_compare(compare_in: str) -> None:
    if compare_in not in ("float64", "float32"):
        raise ValueError(f'compare_in must be "float64" or "float32", got {compare_in!r}.')


def _row_blocks(n: int, row_bytes: int) -> list[tuple[int, int]]:
    rows = max(1, _BLOCK_BYTES // max(1, row_bytes))
    return [(a, min(n, a + rows)) for a in range(0, n, rows)]


def _row_sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared row norms in float64, block by block; refuses NaN and infinite values."""
    sq = np.empty(X.shape[0], dtype=np.float64)
    for a, b in _row_blocks(X.shape[0], X.shape[1] * X.itemsize):
        block = X[a:b]  # einsum widens to float64 through small internal buffers, without a copy
        np.einsum("ij,ij->i", block, block, out=sq[a:b], dtype=np.float64, casting="safe")
    if not np.isfinite(sq).all():
        raise ValueError("X contains NaN or infinite values (or values too large to square).")
    return sq


def _compute_dtype(X: np.ndarray, max_sq_norm: float) -> type[np.floating]:
    """float32 for float16/float32 input (float16 widens exactly), float64 for float64 input or when
    squared distances (up to 4·max‖x‖²) could overflow float32."""
    if X.dtype == np.float64 or 4 * max_sq_norm > float(np.finfo(np.float32).max) / 16:
        return np.float64
    return np.float32


def _tolerance(d: int, compute_dtype: type[np.floating], max_sq_norm: float) -> float:
    """A proven bound on |fast squared distance − float64 reference squared distance| for two rows.

    The fast path computes ‖x‖² − 2·x·c + ‖c‖² in `compute_dtype` (unit roundoff u). A dot product of
    length d is off by at most γ_d·‖x‖‖c‖ (γ_d ≈ d·u, whatever the summation order or FMA use of the
    BLAS), so the −2·x·c term by ≤ d·u·(‖x‖+‖c‖)²/2; the rounded norms and the two additions add
    ≤ 3u·(‖x‖+‖c‖)². The float64 reference (direct differences, squares, a sum) is off by
    ≤ (d + 2)·u₆₄·‖x−c‖². Both are ≤ ... ·4·max‖x‖²; the "+ 8" and "+ 4" cover second-order terms, and
    the last term products that underflow.
    """
    info = np.finfo(compute_dtype)
    u = float(info.eps) / 2
    scale = 4.0 * max_sq_norm
    return ((d / 2 + 8) * u + (d + 4) * _U64) * scale + 4 * d * float(info.smallest_subnormal)


class _CenterRows:
    """The chosen rows, for re-measuring candidates: a contiguous copy of the first ones, then gathers.

    The copy makes re-measuring cost one small matrix product instead of a random gather of t rows;
    it is capped at a tenth of the rows of X so memory stays lean when k is a large fraction of n.
    """

    def __init__(self, X: np.ndarray, sq: np.ndarray, dtype: type[np.floating], capacity: int) -> None:
        self.X, self.sq, self.dtype = X, sq, dtype
        self.indices = np.empty(capacity, dtype=np.int64)
        self.count = 0
        self._copy = np.empty((min(capacity, max(1, X.shape[0] // 10)), X.shape[1]), dtype=dtype)

    @classmethod
    def of(cls, X: np.ndarray, sq: np.ndarray, dtype: type[np.floating], indices: np.ndarray) -> _CenterRows:
        """Given centers, read from X when needed (no copy)."""
        rows = cls(X, sq, dtype, 0)
        rows.indices, rows.count = indices, len(indices)
        return rows

    def append(self, j: int) -> None:
        if self.count < len(self._copy):
            self._copy[self.count] = self.X[j]
        self.indices[self.count] = j
        self.count += 1

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(center indices, their rows in the compute dtype), about 8 MiB at a time."""
        step = max(1, _BLOCK_BYTES // (self.X.shape[1] * np.dtype(self.dtype).itemsize))
        for s in range(0, self.count, step):
            e = min(self.count, s + step)
            idx = self.indices[s:e]
            if e <= len(self._copy):
                yield idx, self._copy[s:e]
            else:
                yield idx, np.asarray(self.X[idx], dtype=self.dtype)


def _comparison_key(sq_dist: np.ndarray, compare_in: str) -> np.ndarray:
    """What picks compare: the float64 squared distance, or for "float32" the distance rounded the way
    scikit-learn's float32 `pairwise_distances` rounds it (squared distance to float32, float32 sqrt)."""
    if compare_in == "float32":
        return np.sqrt(np.maximum(sq_dist, 0).astype(np.float32))
    return sq_dist


def _exact_max_min(
    rows: np.ndarray, centers: _CenterRows, tol: float, compare_in: str = "float64"
) -> tuple[int, float]:
    """Among `rows`, the one whose float64 squared distance to its nearest center is largest (compared
    per `_comparison_key`; lowest index on ties), and that squared distance.

    For each row, fast estimates against every center tell which centers can be the nearest (estimate
    within 2·tol of the smallest); only those pairs are measured in float64, by direct differences as
    in `kcenter_greedy_naive`, so exact ties such as duplicate rows come out tied here as well.
    """
    X, sq, dtype = centers.X, centers.sq, centers.dtype
    best, best_key, best_i = -np.inf, -np.inf, -1
    # Candidates are usually 1–10 rows; many only when rows tie (duplicates), then in bounded tiles.
    step = max(1, min(256, _BLOCK_BYTES // (4 * max(1, centers.count))))
    for s in range(0, len(rows), step):
        part = np.sort(rows[s : s + step])
        P = np.asarray(X[part], dtype=dtype)
        sq_p = sq[part].astype(dtype)
        tiles = []
        for idx, C in centers.blocks():
            tile = C @ P.T  # centers × rows
            tile *= -2
            tile += sq[idx].astype(dtype)[:, None]
            tile += sq_p[None, :]
            tiles.append((idx, tile))
        lowest = np.min([tile.min(axis=0) for _, tile in tiles], axis=0)
        exact = np.full(len(part), np.inf)
        for idx, tile in tiles:
            ci, ri = np.nonzero(tile <= lowest[None, :] + 2 * tol)
            diff = np.asarray(X[idx[ci]], dtype=np.float64) - np.asarray(X[part[ri]], dtype=np.float64)
            np.minimum.at(exact, ri, (diff * diff).sum(axis=1))
        key = _comparison_key(exact, compare_in)
        i = int(np.argmax(key))  # lowest index among equal maxima, since `part` is sorted
        if key[i] > best_key:
            best, best_key, best_i = float(exact[i]), key[i], int(part[i])
    return best_i, best


# --- The running minimum distance, on the host or on a CUDA device ----------------------------------


class _HostDistances:
    """Per-row estimated squared distance to the nearest center (within `_tolerance`), with NumPy.

    Per new center c, one BLAS matrix-vector product X·c over the whole matrix (read in place; float16
    blocks are converted through one small buffer), then a few O(n) vector operations. Chosen rows are
    set to −inf so they are never picked again, even when a duplicate row ties with them.
    """

    def __init__(self, X: np.ndarray, sq: np.ndarray, dtype: type[np.floating]) -> None:
        n, d = X.shape
        self.X, self.dtype = X, dtype
        self.sq = sq.astype(self.dtype)
        self.min_sq = np.full(n, np.inf, dtype=self.dtype)
        self._buf = np.empty(n, dtype=self.dtype)
        direct = X.dtype == self.dtype and X.flags.c_contiguous
        # One product over the whole matrix is fastest; blocks are only needed when converting.
        self._blocks = [(0, n)] if direct else _row_blocks(n, d * np.dtype(self.dtype).itemsize)
        self._convert = None if direct else np.empty((self._blocks[0][1], d), dtype=self.dtype)

    def add_center(self, j: int) -> None:
        c = np.array(self.X[j], dtype=self.dtype)
        buf = self._buf
        for a, b in self._blocks:
            block = self.X[a:b]
            if self._convert is not None:
                block = self._convert[: b - a]
                np.copyto(block, self.X[a:b], casting="unsafe")
            np.matmul(block, c, out=buf[a:b])
        buf *= -2
        buf += self.sq
        buf += self.sq[j]
        np.minimum(self.min_sq, buf, out=self.min_sq)
        self.min_sq[j] = -np.inf

    def candidates(self, window: float) -> np.ndarray:
        """Rows that may hold the true maximum: estimates within `window` of the largest estimate."""
        return np.flatnonzero(self.min_sq >= self.min_sq.max() - window)

    def close(self) -> None:
        pass


class _DeviceDistances:
    """The same running minimum with the matrix on a CUDA device (one upload, block by block)."""

    def __init__(self, X: np.ndarray, sq: np.ndarray, dtype: type[np.floating], device: str) -> None:
        import torch

        n, d = X.shape
        self.torch = torch
        self.dtype = torch.float64 if dtype == np.float64 else torch.float32
        self.X = torch.empty((n, d), dtype=self.dtype, device=device)
        for a, b in _row_blocks(n, d * X.itemsize):
            # A copy of the block: torch refuses read-only (memory-mapped) arrays without a warning.
            self.X[a:b] = torch.from_numpy(np.array(X[a:b])).to(device, self.dtype)
        self.sq = torch.from_numpy(sq).to(device, self.dtype)
        self.min_sq = torch.full((n,), float("inf"), dtype=self.dtype, device=device)
        # TF32 would break the error bound of `_tolerance`; keep full float32 products while we run.
        self._saved_precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def add_center(self, j: int) -> None:
        d2 = self.torch.mv(self.X, self.X[j])
        d2.mul_(-2).add_(self.sq).add_(self.sq[j])
        self.torch.minimum(self.min_sq, d2, out=self.min_sq)
        self.min_sq[j] = float("-inf")

    def candidates(self, window: float) -> np.ndarray:
        rows = self.torch.nonzero(self.min_sq >= self.min_sq.max() - window).flatten()
        return rows.cpu().numpy().astype(np.int64)

    def close(self) -> None:
        self.torch.set_float32_matmul_precision(self._saved_precision)


def _default_device() -> str:
    try:
        import torch
    except ImportError:  # torch is a requirement, but the selection itself does not need it
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def _device_or_host(X: np.ndarray, sq: np.ndarray, dtype: type[np.floating], device: str):
    try:
        return _DeviceDistances(X, sq, dtype, device)
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError among others: the host path still works
        logger.warning("k-center on %s failed (%s); using the CPU", device, exc)
        return _HostDistances(X, sq, dtype)


# --- KCenterGreedy -------------------------------------------------------------------------------


def kcenter_coreset(
    X: np.ndarray,
    k: int,
    *,
    first: int | None = None,
    seed: int = 0,
    on_pick: Callable[[int], None] | None = None,
    device: str | None = None,
    compare_in: str = "float64",
) -> Coreset:
    """Exact greedy k-center picks of the rows of X, with each pick's distance at the time it was picked.

    Each pick maximizes the Euclidean distance to the nearest chosen row; ties go to the lowest index.
    The first pick is `first`, or `np.random.default_rng(seed).integers(n)`. `on_pick(done)` is called
    after each pick. `device` is "cpu" or a torch CUDA device; by default CUDA when available.

    `compare_in="float32"` compares distances rounded to float32, as the WaveCoder repository's loop
    does (scikit-learn returns float32 distances for float32 input): rows whose distances differ by
    less than a float32 rounding step then tie, and the lowest index wins. Its picks are that loop's;
    the default "float64" is the exact greedy. The two differ only at such near-ties (in the bench,
    first at pick 546 of 1,000 on 100K Gaussian rows, two rows 1e-8 apart relatively).

    Why it is fast and still exact: the running minimum is kept in float32 (float64 for float64 input)
    from one BLAS matrix-vector product per pick, ‖x‖² − 2·x·c + ‖c‖² with the row norms computed once.
    Each estimate is within a proven bound `tol` of the float64 reference (see `_tolerance`), so only
    rows whose estimate is within 2·tol of the largest can hold the true maximum: usually 1–3 rows.
    Those are re-measured (`_exact_max_min`): estimates against the chosen rows say which centers can
    be nearest, and only those pairs are measured in float64, exactly as `kcenter_greedy_naive` does.
    So picks (ties included) and the reported distances are those of the reference, for the cost of
    one streaming read of X per pick; the sklearn loop reads X, upcasts it and writes n×1 results.

    Memory: X is read in place (a memory map works); beyond it, a few arrays of n numbers, ~8 MiB
    blocks, and a copy of the chosen rows (at most a tenth of the rows). No copy of X, no n×k
    matrix. float16 input is widened block by block on every pass: correct, but NumPy's conversion
    is slow (~25× the product), so callers that can afford it should pass float32.

    Triangle-inequality pruning (skip rows closer to their center than half its distance to the new
    center) is not used: measured on MiniLM embeddings of 4,000 standard-library functions, under 2%
    of rows could be skipped in the first 200 picks (none on Gaussian data), and skipping scattered
    rows needs a gather that costs more than the streaming product it saves.
    """
    X = _as_matrix(X)
    n, d = X.shape
    k = _check_k(k, n)
    start = _first_index(n, first, seed)
    _check_compare(compare_in)
    sq = _row_sq_norms(X)
    dtype = _compute_dtype(X, float(sq.max()))
    tol = _tolerance(d, dtype, float(sq.max()))
    # Rows tied after float32 rounding are up to ~6u apart; the extra tol (≥ 8.5u·d²) keeps them all.
    window = 2 * tol if compare_in == "float64" else 3 * tol
    device = device or _default_device()
    state = _HostDistances(X, sq, dtype) if device == "cpu" else _device_or_host(X, sq, dtype, device)
    centers = _CenterRows(X, sq, dtype, k)
    distances = np.full(k, np.nan, dtype=np.float64)
    try:
        centers.append(start)
        state.add_center(start)
        if on_pick:
            on_pick(1)
        for t in range(1, k):
            i, d2 = _exact_max_min(state.candidates(window), centers, tol, compare_in)
            distances[t] = np.sqrt(max(d2, 0.0))
            centers.append(i)
            state.add_center(i)
            if on_pick:
                on_pick(t + 1)
    finally:
        state.close()
    return Coreset(centers.indices, distances)


def kcenter_greedy(
    X: np.ndarray,
    k: int,
    *,
    first: int | None = None,
    seed: int = 0,
    on_pick: Callable[[int], None] | None = None,
    device: str | None = None,
    compare_in: str = "float64",
) -> np.ndarray:
    """k distinct row indices (int64) in greedy k-center pick order; see `kcenter_coreset`."""
    return kcenter_coreset(
        X, k, first=first, seed=seed, on_pick=on_pick, device=device, compare_in=compare_in
    ).indices


def kcenter_greedy_naive(
    X: np.ndarray, k: int, *, first: int | None = None, seed: int = 0, compare_in: str = "float64"
) -> np.ndarray:
    """The reference greedy in plain float64 NumPy: O(n·k·d) time and a float64 copy of X.

    Squared distances by direct differences, a running minimum, chosen rows excluded, and `np.argmax`
    (lowest index on ties) over `_comparison_key`. Used by tests to check `kcenter_greedy`.
    """
    X = _as_matrix(X)
    n = X.shape[0]
    k = _check_k(k, n)
    start = _first_index(n, first, seed)
    _check_compare(compare_in)
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values (or values too large to square).")
    min_sq = np.full(n, np.inf)
    picks = [start]
    for _ in range(k - 1):
        diff = X - X[picks[-1]]
        np.minimum(min_sq, (diff * diff).sum(axis=1), out=min_sq)
        key = _comparison_key(min_sq, compare_in)
        key[picks] = -np.inf
        picks.append(int(np.argmax(key)))
    return np.asarray(picks, dtype=np.int64)


# --- Coverage radius ----------------------------------------------------------------------------


def _approx_min_sq(
    X: np.ndarray, centers: np.ndarray, sq: np.ndarray, dtype: type[np.floating]
) -> np.ndarray:
    """Estimated squared distance of each row to its nearest center, within `_tolerance`.

    Blocks of centers against blocks of rows through BLAS matrix products; each tile is ~8 MiB.
    """
    n = X.shape[0]
    out = np.full(n, np.inf, dtype=dtype)
    sq_rows = sq.astype(dtype)
    center_block = min(len(centers), 1024)
    for s in range(0, len(centers), center_block):
        idx = centers[s : s + center_block]
        C = np.asarray(X[idx], dtype=dtype)
        sq_c = sq_rows[idx]
        for a, b in _row_blocks(n, len(idx) * np.dtype(dtype).itemsize):
            tile = np.asarray(X[a:b], dtype=dtype) @ C.T
            tile *= -2
            tile += sq_rows[a:b, None]
            tile += sq_c[None, :]
            np.minimum(out[a:b], tile.min(axis=1), out=out[a:b])
    return out


def coverage_radius(X: np.ndarray, centers: np.ndarray) -> float:
    """The largest distance from any row of X to its nearest center: how well the centers cover X.

    Estimated for all rows with blocked matrix products (memory: a few arrays of n numbers and ~8 MiB
    tiles), then the rows that may hold the maximum are re-measured in float64, so the result is the
    exact float64 radius.
    """
    X = _as_matrix(X)
    n, d = X.shape
    centers = np.asarray(centers, dtype=np.int64).ravel()
    if len(centers) == 0:
        raise ValueError("centers must not be empty.")
    if centers.min() < 0 or centers.max() >= n:
        raise ValueError(f"centers must be row indices in [0, {n}).")
    sq = _row_sq_norms(X)
    dtype = _compute_dtype(X, float(sq.max()))
    tol = _tolerance(d, dtype, float(sq.max()))
    est = _approx_min_sq(X, centers, sq, dtype)
    rows = np.flatnonzero(est >= est.max() - 2 * tol)
    _, best = _exact_max_min(rows, _CenterRows.of(X, sq, dtype, centers), tol)
    return float(np.sqrt(max(best, 0.0)))


# --- The stage ----------------------------------------------------------------------------------


class SelectionError(Exception):
    """A problem with the run's inputs (empty pool, k too large); its message is shown to people."""


def _pool(languages: list[str] | tuple[str, ...]):
    samples = CodeSample.objects.all()
    return samples.filter(language__in=list(languages)) if languages else samples


def _languages_note(languages: list[str] | tuple[str, ...]) -> str:
    return f" in {', '.join(languages)}" if languages else ""


def create_selection_run(
    *, k: int, seed: int = 0, model_name: str | None = None, languages=(), user=None
) -> SelectionRun:
    """Validate the parameters and create a QUEUED SelectionRun (run it with `run_selection`).

    Raises ValueError when k is not a positive integer, the pool is empty, or k exceeds the pool.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    languages = sorted({str(lang).strip() for lang in languages if str(lang).strip()})
    pool_size = _pool(languages).count()
    if pool_size == 0:
        raise ValueError(f"There are no code samples{_languages_note(languages)} to select from.")
    if k > pool_size:
        raise ValueError(f"k={k} is larger than the pool ({pool_size} samples{_languages_note(languages)}).")
    return SelectionRun.objects.create(
        k=k,
        seed=seed,
        model_name=(model_name or "").strip() or settings.EMBEDDING_MODEL,
        languages=languages,
        created_by=user,
    )


def run_selection(run_id: int, on_progress=None) -> SelectionRun:
    """Embed the run's pool (reusing stored vectors), pick the KCenterGreedy coreset, measure its radius.

    Does nothing when the run already finished (a redelivered message for a running one runs it again).
    Failures are recorded on the run
    (status FAILED with a message), never raised; the run is returned either way.
    """
    run = SelectionRun.objects.get(pk=run_id)
    if not run.claim():
        return run
    try:
        _select(run, ProgressReporter(run, on_progress))
    except (SelectionError, ValueError) as exc:
        run.finish(SelectionRun.Status.FAILED, error=str(exc))
    except Exception as exc:
        logger.exception("selection run %s failed", run.pk)
        run.finish(SelectionRun.Status.FAILED, error=f"unexpected error: {type(exc).__name__}: {exc}")
    else:
        run.finish(SelectionRun.Status.SUCCEEDED)
    return run


def _select(run: SelectionRun, progress: ProgressReporter) -> None:
    languages = run.languages or []
    ids = _pool(languages).order_by("id").values_list("id", flat=True)
    pool_ids = np.fromiter(ids.iterator(chunk_size=10_000), dtype=np.int64)
    n = len(pool_ids)
    if n == 0:
        raise SelectionError(f"There are no code samples{_languages_note(languages)} to select from.")
    if run.k > n:
        raise SelectionError(f"k={run.k} is larger than the pool ({n} samples{_languages_note(languages)}).")
    run.pool_size = n
    run.save(update_fields=["pool_size"])

    model_name = run.model_name or settings.EMBEDDING_MODEL
    embedder = embeddings.get_embedder(model_name)
    embedding_set, rows = _embedding_set_for(pool_ids, model_name, embedder, progress)
    run.embedding_set = embedding_set
    run.save(update_fields=["embedding_set"])
    X = _pool_vectors(embedding_set, rows)

    progress.start("selecting", run.k)
    coreset = kcenter_coreset(X, run.k, seed=run.seed, on_pick=progress.update)
    picks = [
        SelectionPick(
            run=run,
            sample_id=int(pool_ids[i]),
            rank=rank,
            distance=None if np.isnan(dist) else float(dist),
        )
        for rank, (i, dist) in enumerate(zip(*coreset, strict=True))
    ]
    with transaction.atomic():
        SelectionPick.objects.filter(run=run).delete()  # left by an earlier, interrupted attempt
        SelectionPick.objects.bulk_create(picks, batch_size=2000)

    # The baseline: k samples drawn at random with the same seed, measured the same way.
    progress.start("radius", 2)
    run.coverage_radius = coverage_radius(X, coreset.indices)
    progress.update(1)
    random_rows = np.random.default_rng(run.seed).choice(n, size=run.k, replace=False)
    run.random_radius = coverage_radius(X, random_rows)
    progress.update(2)
    run.save(update_fields=["coverage_radius", "random_radius"])


# --- Embedding sets -----------------------------------------------------------------------------


def _file(name: str) -> Path:
    """Files are recorded relative to EMBEDDINGS_DIR, so the artifacts folder can move."""
    return Path(settings.EMBEDDINGS_DIR) / name


def _load_set(embedding_set: EmbeddingSet) -> tuple[np.ndarray, np.ndarray] | None:
    """(ids, vectors) as read-only memory maps, or None when the files are missing or inconsistent."""
    try:
        ids = np.load(_file(embedding_set.ids_file), mmap_mode="r")
        vectors = np.load(_file(embedding_set.vectors_file), mmap_mode="r")
    except (OSError, ValueError) as exc:
        logger.warning("embedding set %s is unusable: %s", embedding_set.pk, exc)
        return None
    if ids.ndim != 1 or vectors.shape != (len(ids), embedding_set.dim):
        logger.warning("embedding set %s: ids and vectors do not match", embedding_set.pk)
        return None
    return ids, vectors


def _rows_of(set_ids: np.ndarray, wanted: np.ndarray) -> np.ndarray | None:
    """Row positions of `wanted` ids in `set_ids`, or None when some are missing."""
    if len(set_ids) == 0:
        return None
    set_ids = np.asarray(set_ids)
    sorter = None if np.all(set_ids[1:] > set_ids[:-1]) else np.argsort(set_ids, kind="stable")
    pos = np.minimum(np.searchsorted(set_ids, wanted, sorter=sorter), len(set_ids) - 1)
    rows = pos if sorter is None else sorter[pos]
    return rows if np.array_equal(set_ids[rows], wanted) else None


def _embedding_set_for(
    pool_ids: np.ndarray, model_name: str, embedder: embeddings.Embedder, progress: ProgressReporter
) -> tuple[EmbeddingSet, np.ndarray]:
    """The embedding set to select from and the rows of the pool in it.

    Reuses the newest set of this model that holds every pool sample. Otherwise writes a new set: the
    newest set's vectors for samples that still exist, plus the pool samples it lacks, embedded now.
    So embeddings accumulate and each sample is embedded once per model.
    """
    newest = None
    for candidate in EmbeddingSet.objects.filter(model_name=model_name, dim=embedder.dim).order_by(
        "-created_at", "-pk"
    ):
        loaded = _load_set(candidate)
        if loaded is None:
            continue
        newest = newest or (candidate, *loaded)
        rows = _rows_of(loaded[0], pool_ids)
        if rows is not None:
            progress.start("embedding", 0)
            return candidate, rows

    old_ids, old_vectors, keep = np.empty(0, dtype=np.int64), None, np.empty(0, dtype=np.int64)
    if newest is not None:
        old_ids, old_vectors = np.asarray(newest[1], dtype=np.int64), newest[2]
        existing = np.fromiter(
            CodeSample.objects.values_list("id", flat=True).iterator(chunk_size=10_000), dtype=np.int64
        )
        keep = np.flatnonzero(np.isin(old_ids, existing))  # drop vectors of deleted samples
    missing = np.setdiff1d(pool_ids, old_ids[keep])
    new_ids = np.union1d(old_ids[keep], pool_ids)
    progress.start("embedding", len(missing))
    embedding_set = _write_set(model_name, embedder, new_ids, old_ids, old_vectors, keep, missing, progress)
    return embedding_set, np.searchsorted(new_ids, pool_ids)


def _write_set(
    model_name: str,
    embedder: embeddings.Embedder,
    new_ids: np.ndarray,
    old_ids: np.ndarray,
    old_vectors: np.ndarray | None,
    keep: np.ndarray,
    missing: np.ndarray,
    progress: ProgressReporter,
) -> EmbeddingSet:
    """Write vectors and ids for `new_ids` (copied rows `keep` of the old set, then `missing` embedded)."""
    folder = Path(settings.EMBEDDINGS_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    slug = "".join(ch if ch.isalnum() else "-" for ch in Path(model_name).name)[:60] or "model"
    stem = f"{slug}-{uuid.uuid4().hex[:12]}"
    vectors_name, ids_name = f"{stem}.vectors.npy", f"{stem}.ids.npy"
    partial = [folder / f"{vectors_name}.partial", folder / f"{ids_name}.partial"]
    dtype = np.dtype(settings.EMBEDDING_DTYPE)
    try:
        # Written through a memory map, so neither the old nor the new set is held in memory whole.
        shape = (len(new_ids), embedder.dim)
        out = np.lib.format.open_memmap(partial[0], mode="w+", dtype=dtype, shape=shape)
        step = max(1, _BLOCK_BYTES // (embedder.dim * 4))
        for s in range(0, len(keep), step):
            rows = keep[s : s + step]
            out[np.searchsorted(new_ids, old_ids[rows])] = old_vectors[rows]
        for s in range(0, len(missing), 512):
            ids = missing[s : s + 512]
            samples = CodeSample.objects.filter(id__in=ids.tolist()).only("id", "code", "docstring")
            by_id = {sample.id: sample for sample in samples}
            texts = [embeddings.sample_text(by_id[i]) for i in ids.tolist()]
            batch_size = settings.EMBEDDING_BATCH_SIZE
            vectors = embedder.encode(texts, batch_size=batch_size, on_batch=progress.advance)
            if vectors.shape != (len(ids), embedder.dim) or not np.isfinite(vectors).all():
                raise SelectionError(
                    f"The embedder {embedder.name!r} returned {vectors.shape} vectors with non-finite values "
                    f"or the wrong shape for {len(ids)} texts (expected dimension {embedder.dim})."
                )
            out[np.searchsorted(new_ids, ids)] = vectors
        out.flush()
        del out
        with open(partial[1], "wb") as fh:
            np.save(fh, new_ids.astype(np.int64))
        os.replace(partial[0], folder / vectors_name)
        os.replace(partial[1], folder / ids_name)
    except BaseException:
        for path in partial:
            path.unlink(missing_ok=True)
        raise
    return EmbeddingSet.objects.create(
        model_name=model_name,
        dim=embedder.dim,
        count=len(new_ids),
        dtype=dtype.name,
        vectors_file=vectors_name,
        ids_file=ids_name,
    )


def _pool_vectors(embedding_set: EmbeddingSet, rows: np.ndarray) -> np.ndarray:
    """The pool's vectors as a float32 matrix: the memory map itself when the pool is the whole set.

    float16 sets are converted here, once: the selection reads the matrix once per pick and converting
    float16 on every pass costs far more than the product itself.
    """
    loaded = _load_set(embedding_set)
    if loaded is None:
        raise SelectionError(f"The files of embedding set #{embedding_set.pk} are missing or damaged.")
    vectors = loaded[1]
    whole = len(rows) == len(vectors) and np.array_equal(rows, np.arange(len(rows)))
    if whole and vectors.dtype == np.float32:
        return vectors
    X = np.empty((len(rows), vectors.shape[1]), dtype=np.float32)
    step = max(1, _BLOCK_BYTES // (vectors.shape[1] * 4))
    for s in range(0, len(rows), step):
        X[s : s + step] = vectors[rows[s : s + step]]
    return X
