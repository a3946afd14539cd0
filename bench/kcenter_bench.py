"""KCenterGreedy: our `kcenter_greedy` against the scikit-learn loop of the WaveCoder repository.

The baseline is what the WaveCoder repository (after Google's active-learning `kcenter_greedy`) does:
per pick, `sklearn.metrics.pairwise_distances(X, X[[c]])`, a running `np.minimum`, then `np.argmax`.

Each measurement runs in a fresh process, so its peak memory is its own: the matrix is generated
first (block by block, without temporaries), a tiny warm-up run loads libraries and BLAS buffers, the
peak-RSS counter is reset, then the timed run. Reported memory is the extra beyond the matrix, as a
ratio of the matrix's size: by peak RSS, and by tracemalloc's peak of NumPy allocations.

Partial runs: greedy picks are a prefix-stable sequence (the first m picks of a k-pick run are the
m-pick run), so large k and the slow baseline are timed on their first picks, extrapolated linearly
(marked "est."), and picks are compared on the overlapping prefix.

    .venv/bin/python bench/kcenter_bench.py            # 100K and 1M × 384, a few minutes
    .venv/bin/python bench/kcenter_bench.py --quick    # 20K × 384, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wavecoder_site.settings")
    import django

    django.setup()


def make_data(kind: str, n: int, d: int, seed: int) -> np.ndarray:
    """float32 data, generated in blocks so that no temporary larger than a block exists.

    gaussian: i.i.d. N(0, 1) entries. blobs: a mixture of 256 Gaussians (means N(0, I), σ = 0.5 within
    a cluster) with rows L2-normalized, the shape of sentence embeddings.
    """
    rng = np.random.default_rng(seed)
    X = np.empty((n, d), dtype=np.float32)
    means = rng.standard_normal((256, d), dtype=np.float32) if kind == "blobs" else None
    for a in range(0, n, 65536):
        block = X[a : a + 65536]
        rng.standard_normal(block.shape, dtype=np.float32, out=block)
        if means is not None:
            block *= 0.5
            block += means[rng.integers(256, size=len(block))]
            block /= np.linalg.norm(block, axis=1, keepdims=True)
    return X


def _baseline(X: np.ndarray, k: int, first: int, budget_s: float, stamps: list[float]) -> list[int]:
    """The WaveCoder loop; stops early once `budget_s` is spent (a partial, prefix-exact run)."""
    from sklearn.metrics import pairwise_distances

    picks, min_distances = [first], None
    start = time.perf_counter()
    while len(picks) < k and time.perf_counter() - start < budget_s:
        dist = pairwise_distances(X, X[[picks[-1]]], metric="euclidean")
        min_distances = dist if min_distances is None else np.minimum(min_distances, dist)
        picks.append(int(np.argmax(min_distances)))
        stamps.append(time.perf_counter())
    return picks


def _vm_hwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux resets the peak RSS (VmHWM) to the current RSS when "5" is written to clear_refs."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def worker(spec: dict) -> dict:
    """One measurement in this (fresh) process; returns timings and memory as a dict."""
    import resource
    import tracemalloc

    _setup_django()
    from curation.selection import kcenter_greedy

    X = make_data(spec["data"], spec["n"], spec["d"], spec["seed"])
    first = int(np.random.default_rng(spec["seed"]).integers(spec["n"]))
    picks_wanted = spec["picks"]

    # Warm up: imports, BLAS threads and buffers, torch's import (device detection).
    small = X[:2048].copy()
    kcenter_greedy(small, 8, first=0)
    _baseline(small, 8, 0, 60.0, [])
    del small

    resettable = _reset_peak_rss()
    rss_before = _vm_hwm_bytes() if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    stamps: list[float] = []
    start = time.perf_counter()
    if spec["method"] == "ours":
        picks = kcenter_greedy(
            X,
            picks_wanted,
            first=first,
            device="cpu",
            compare_in="float32",  # reproduces the baseline's float32 tie-breaking
            on_pick=lambda done: stamps.append(time.perf_counter()),
        ).tolist()
        stamps = stamps[1:]  # the first "pick" is given, not searched
    else:
        picks = _baseline(X, picks_wanted, first, spec["budget_s"], stamps)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = _vm_hwm_bytes() if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    times = np.diff([start, *stamps])  # seconds per searched pick
    np.save(spec["picks_file"], np.asarray(picks, dtype=np.int64))
    if spec.get("exact_file"):  # the default, exact float64 comparison, for the footnote
        np.save(spec["exact_file"], kcenter_greedy(X, picks_wanted, first=first, device="cpu"))
    ms_by_prefix = {
        str(m): float(times[: m - 1].mean() * 1e3) for m in spec["prefixes"] if len(times) >= m - 1
    }
    return {
        "picks": len(picks),
        "ms_per_pick": float(times.mean() * 1e3),
        "ms_by_prefix": ms_by_prefix,
        "rss_extra": (rss_after - rss_before) / X.nbytes,
        "traced_extra": traced_peak / X.nbytes,
        "matrix_mb": X.nbytes / 2**20,
    }


def _measure(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"worker failed: {spec}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated numbers of rows")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--k-large", type=int, default=20000, help="large k, estimated at the largest size")
    parser.add_argument("--large-picks", type=int, default=2000, help="picks timed for the large-k estimate")
    parser.add_argument("--baseline-budget", type=float, default=120.0, help="seconds per baseline run")
    parser.add_argument(
        "--baseline-budget-large", type=float, default=40.0, help="seconds per baseline run above 200K rows"
    )
    parser.add_argument("--data", default="gaussian,blobs", help="gaussian and/or blobs")
    parser.add_argument("--blobs-max-n", type=int, default=100000, help="largest size also run on blobs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="20K rows, k=200: a smoke test in seconds")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.quick:
        args.sizes, args.k, args.k_large, args.large_picks, args.baseline_budget = "20000", 200, 0, 0, 30.0

    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = [s.strip() for s in args.data.split(",") if s.strip()]
    header = [
        "data",
        "n × d",
        "k",
        "ours ms/pick",
        "sklearn ms/pick",
        "speedup",
        "identical picks",
        "ours extra mem (RSS / traced)",
        "sklearn extra mem (RSS / traced)",
    ]
    rows, notes = [], []
    started, load_before = time.perf_counter(), os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for kind in kinds:
                if kind == "blobs" and n > args.blobs_max_n:
                    continue
                large = n == max(sizes) and args.k_large > args.k
                ours_picks = max(args.k, args.large_picks if large else 0)
                base = {"data": kind, "n": n, "d": args.dim, "seed": args.seed, "prefixes": [args.k]}
                exact_file = f"{tmp}/exact.npy" if n <= 200_000 else ""
                ours = _measure(
                    {
                        **base,
                        "method": "ours",
                        "picks": ours_picks,
                        "picks_file": f"{tmp}/ours.npy",
                        "exact_file": exact_file,
                    }
                )
                sk = _measure(
                    {
                        **base,
                        "method": "sklearn",
                        "picks": args.k,
                        "budget_s": args.baseline_budget if n <= 200_000 else args.baseline_budget_large,
                        "picks_file": f"{tmp}/sk.npy",
                    }
                )
                a, b = np.load(f"{tmp}/ours.npy"), np.load(f"{tmp}/sk.npy")
                overlap = min(len(a), len(b))
                same = bool(np.array_equal(a[:overlap], b[:overlap]))
                if exact_file:
                    e = np.load(exact_file)[:overlap]
                    differ = np.flatnonzero(e != b[:overlap])
                    notes.append(
                        f"{kind} {n:,}: exact float64 mode (the default) = baseline for all {overlap:,} picks"
                        if len(differ) == 0
                        else f"{kind} {n:,}: exact float64 mode (the default) = baseline for the first "
                        f"{differ[0]:,} picks, then a near-tie that float32 distances round to a tie"
                    )
                ours_ms = ours["ms_by_prefix"].get(str(args.k), ours["ms_per_pick"])
                sk_partial = sk["picks"] < args.k
                identical = f"{'yes' if same else 'NO'} ({overlap:,} picks{', prefix' if sk_partial else ''})"
                mem = "{rss_extra:.3f}× / {traced_extra:.3f}×"
                rows.append(
                    [
                        kind,
                        f"{n:,} × {args.dim}",
                        f"{args.k:,}",
                        f"{ours_ms:.2f}",
                        f"{sk['ms_per_pick']:.2f}"
                        + (f" (est. from {sk['picks']} picks)" if sk_partial else ""),
                        f"{sk['ms_per_pick'] / ours_ms:.1f}×",
                        identical,
                        mem.format(**ours),
                        mem.format(**sk),
                    ]
                )
                if large:
                    rows.append(
                        [
                            kind,
                            f"{n:,} × {args.dim}",
                            f"{args.k_large:,}",
                            f"{ours['ms_per_pick']:.2f} (est. from {ours['picks']:,} picks)",
                            f"{sk['ms_per_pick']:.2f} (est. from {sk['picks']} picks)",
                            f"{sk['ms_per_pick'] / ours['ms_per_pick']:.1f}×",
                            f"{'yes' if same else 'NO'} ({overlap:,} picks, prefix)",
                            mem.format(**ours) + f" ({ours['picks']:,} picks)",
                            "—",
                        ]
                    )
                print(f"  done {kind} n={n:,} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)

    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(_row(header, widths))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(_row(r, widths))
    print('\nours = kcenter_greedy(compare_in="float32"): ties broken like the float32 distances of sklearn.')
    for note in notes:
        print(note)
    est = [r for r in rows if "est." in r[3] or "est." in r[4]]
    if est:
        print("est.: ms/pick averaged over a partial run; totals scale linearly with k (time = ms/pick × k).")
    print(
        f"Extra memory: peak beyond the float32 matrix, as a multiple of its size. CPU only, "
        f"{os.cpu_count()} cores; total bench time {time.perf_counter() - started:.0f} s; load average "
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (other work on the machine slows both)."
    )


if __name__ == "__main__":
    main()
