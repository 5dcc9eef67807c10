"""Compact gallery storage: cosine top-k over 1M rows, one query, one thread, float32 vs float16 vs int8.

Side by side in one run, on the same clustered unit rows (G x d): the float32
re-ranker (``cosine_topk``), :class:`streams.rows.Rows` stored as float16 and as
int8, numpy (``matrix @ q`` + ``argpartition``) and faiss ``IndexFlatIP`` when
faiss is installed (the ``bench`` extra: ``pip install -e '.[bench]'``). Each is
the median of ``--queries`` queries, per run; top-10 agreement with float32 and
memory per entry (rows, scales and the subject code) are printed per dtype.
Writes JSON to ``perf/results/bench_compact.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from perf.report import write_report
from streams import _rerank
from streams.rows import Rows

RESULTS = Path(__file__).parent / "results" / "bench_compact.json"
CODE_BYTES = 8  # the int64 subject code every gallery row has beside its values


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """Unit rows round 10,000 centres, made a block at a time to keep the peak memory near the result's."""
    centres = rng.standard_normal((10_000, d)).astype(np.float32)
    out = np.empty((n, d), dtype=np.float32)
    for first in range(0, n, 100_000):
        block = centres[rng.integers(0, len(centres), min(100_000, n - first))]
        block += 0.5 * rng.standard_normal(block.shape, dtype=np.float32)
        out[first : first + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def median_ms(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple[float, np.ndarray]:
    search(queries[0])  # warm: first touch of the pages, thread pools
    times, found = [], []
    for q in queries:
        started = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, np.stack(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(1)
    matrix = unit_rows(rng, args.rows, args.dim)
    queries = unit_rows(rng, args.queries, args.dim)
    k = args.k
    stores = {}
    for dtype in ("float16", "int8"):
        rows = Rows(args.dim, dtype, capacity=args.rows)
        for i, row in enumerate(matrix):
            rows.set(i, row)
        stores[dtype] = rows
    searches: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "float32": lambda q: _rerank.cosine_topk(q[None, :], matrix, k, threads=1)[0][0],
        "float16": lambda q: stores["float16"].topk(q[None, :], k, threads=1)[0][0],
        "int8": lambda q: stores["int8"].topk(q[None, :], k, threads=1)[0][0],
        "numpy": lambda q: np.argpartition(-(matrix @ q), k)[:k],
    }
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        flat = faiss.IndexFlatIP(args.dim)
        flat.add(matrix)
        searches["faiss_flat"] = lambda q: flat.search(q[None, :], k)[1][0]
    except ImportError:
        print("faiss not installed: its column is left out (pip install -e '.[bench]')")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    runs = []
    for run in range(args.runs):
        timings, agreement, reference = {}, {}, None
        for name, search in searches.items():
            timings[name], found = median_ms(search, queries)
            if reference is None:
                reference = found
            agreement[name] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, reference, strict=True)]))
        runs.append({"ms": timings, "top10_agreement_with_float32": agreement})
        print(f"run {run + 1}: " + "  ".join(f"{name} {ms:.2f} ms" for name, ms in timings.items())
              + f"  | float16 x{timings['float32'] / timings['float16']:.2f}, int8 x{timings['float32'] / timings['int8']:.2f}"
              + (f", float16 over faiss x{timings['faiss_flat'] / timings['float16']:.2f}" if "faiss_flat" in timings else ""),
              flush=True)
    memory = {"float32": 4 * args.dim + CODE_BYTES} | {d: s.bytes_per_row + CODE_BYTES for d, s in stores.items()}
    print("top-10 agreement with float32:", runs[-1]["top10_agreement_with_float32"])
    print("bytes per entry (rows, scale, subject code):", memory)
    report = {
        "benchmark": "bench_compact",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "kernels": _rerank.compact_kernels()},
        "rows": args.rows, "dim": args.dim, "k": k, "threads": 1,
        "runs": runs, "bytes_per_entry": memory,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
