"""The C++ re-ranker against numpy, measured side by side in one run.

- k-reciprocal: streams.rerank.k_reciprocal vs the numpy reference of the unit tests
  (tests/unit/rerank_reference.py), G = 100, 1000, 3000, d = 128, Q = 1 and 16.
- cosine top-k: streams.rerank.cosine_topk vs numpy (matmul + argpartition + sort of
  the k), G = 10k and 100k, d = 128 and 512, Q = 1 and 16, k = 10. "1 thread" pits
  one re-ranker thread against numpy with one BLAS thread; "2 threads" two against two.

Each time is the best of a few repetitions. The ratios (numpy time / re-ranker time)
are printed last and written with every timing to perf/results/bench_rerank.json.

    .venv/bin/python -m perf.bench_rerank [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from streams import _rerank, rerank
from tests.support import REPO
from tests.unit import rerank_reference as reference

RESULTS = REPO / "perf" / "results" / "bench_rerank.json"
TOP_K = 10


def clustered(seed: int, n: int, d: int, clusters: int, noise: float = 0.35) -> np.ndarray:
    """Unit-length float32 rows around random centres, like face embeddings of a few hundred people."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + noise * rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def best_time(fn: Callable[[], object], reps: int, budget_s: float = 1.0) -> float:
    """Best wall time of up to `reps` calls, stopping early once `budget_s` is spent."""
    best, spent = float("inf"), 0.0
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best, spent = min(best, elapsed), spent + elapsed
        if spent > budget_s:
            break
    return best


def numpy_topk(queries: np.ndarray, gallery: np.ndarray, k: int) -> np.ndarray:
    """What a numpy user writes for unit-length embeddings: one matmul, argpartition, sort the k."""
    scores = queries @ gallery.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def bench_k_reciprocal(quick: bool) -> list[dict]:
    rows = []
    for g in (100, 1000) if quick else (100, 1000, 3000):
        for q in (1, 16):
            x = clustered(seed=g + q, n=q + g, d=128, clusters=max(4, g // 20))
            queries, gallery = x[:q], x[q:]
            with threadpool_limits(1):
                ref_reps = 5 if g <= 100 else (2 if g <= 1000 else 1)
                t_ref = best_time(lambda: reference.k_reciprocal(queries, gallery), ref_reps, budget_s=2.0)
                t1 = best_time(lambda: rerank.k_reciprocal(queries, gallery, threads=1), 20)
                t2 = best_time(lambda: rerank.k_reciprocal(queries, gallery, threads=2), 20)
                agree = bool(
                    np.allclose(rerank.k_reciprocal(queries, gallery), reference.k_reciprocal(queries, gallery), atol=1e-5)
                ) if g <= 1000 else None
            rows.append(
                {"method": "k_reciprocal", "Q": q, "G": g, "d": 128, "numpy_s": t_ref, "ext_1t_s": t1, "ext_2t_s": t2,
                 "ratio_1t": t_ref / t1, "ratio_2t": t_ref / t2, "agrees": agree}
            )
            print(f"k_reciprocal Q={q:>2} G={g:>5} d=128  numpy {t_ref * 1e3:9.1f} ms  "
                  f"ext 1t {t1 * 1e3:8.2f} ms  2t {t2 * 1e3:8.2f} ms", flush=True)
    return rows


def bench_cosine(quick: bool) -> list[dict]:
    rows = []
    for g in (10_000,) if quick else (10_000, 100_000):
        for d in (128, 512):
            gallery = clustered(seed=g + d, n=g, d=d, clusters=500)
            for q in (1, 16):
                queries = clustered(seed=q, n=q, d=d, clusters=q)
                row = {"method": "cosine_topk", "Q": q, "G": g, "d": d, "k": TOP_K}
                for threads in (1, 2):
                    with threadpool_limits(threads):
                        t_np = best_time(lambda: numpy_topk(queries, gallery, TOP_K), 30)
                        t_ext = best_time(lambda: rerank.cosine_topk(queries, gallery, TOP_K, threads=threads), 30)
                    row |= {f"numpy_{threads}t_s": t_np, f"ext_{threads}t_s": t_ext, f"ratio_{threads}t": t_np / t_ext}
                row["agrees"] = bool(
                    np.array_equal(rerank.cosine_topk(queries, gallery, TOP_K)[0], numpy_topk(queries, gallery, TOP_K))
                )
                rows.append(row)
                print(f"cosine_topk  Q={q:>2} G={g:>6} d={d:>3}  "
                      f"1t numpy {row['numpy_1t_s'] * 1e3:7.2f} ms ext {row['ext_1t_s'] * 1e3:7.2f} ms  "
                      f"2t numpy {row['numpy_2t_s'] * 1e3:7.2f} ms ext {row['ext_2t_s'] * 1e3:7.2f} ms", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    args = parser.parse_args()
    blas = [f"{i['internal_api']} {i.get('architecture', '')} ({i['num_threads']} threads)" for i in threadpool_info()]
    print(f"kernels: {_rerank.kernels()}; numpy {np.__version__}, BLAS: {', '.join(blas)}; cores: {os.cpu_count()}")

    started = time.perf_counter()
    rows = bench_k_reciprocal(args.quick) + bench_cosine(args.quick)

    print("\nratios (numpy time / re-ranker time; > 1 means the re-ranker is faster)")
    for r in rows:
        where = f"{r['method']:<12} Q={r['Q']:>2} G={r['G']:>6} d={r['d']:>3}"
        agree = "" if r["agrees"] is None else ("" if r["agrees"] else "  RESULTS DIFFER")
        print(f"  {where}  1 thread {r['ratio_1t']:7.1f}x   2 threads {r['ratio_2t']:7.1f}x{agree}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "kernels": _rerank.kernels(), "blas": blas, "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "seconds": time.perf_counter() - started, "rows": rows,
    }, indent=2))
    print(f"\nwritten {RESULTS.relative_to(REPO)} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
