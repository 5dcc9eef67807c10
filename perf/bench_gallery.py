"""Gallery-level re-ranking, measured side by side in one run.

- k-reciprocal per query: a gallery's neighbour graph (streams.neighbour_graph) against the dense
  streams.rerank.k_reciprocal of the same query, G = 10k and 100k, d = 128, clustered rows, one
  thread. The dense path runs at 10k only; at 100k its time is the 10k one scaled by G^2 (it is
  O((Q + G)^2 d)), marked as an estimate. Also: the graph's bulk build (all cores) and what one
  append, overwrite and delete through Gallery costs once the graph is built.

Each section is a function returning its rows; main prints the ratios last and writes every
timing to perf/results/bench_gallery.json.

    .venv/bin/python -m perf.bench_gallery [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from perf.bench_rerank import best_time, clustered
from streams import _rerank, rerank
from streams.gallery import Gallery
from tests.support import REPO

RESULTS = REPO / "perf" / "results" / "bench_gallery.json"
D = 128
QUERIES = 20
CHANGES = 20


def _gallery(rows: np.ndarray) -> Gallery:
    gallery = Gallery(rows.shape[1], capacity=len(rows) + CHANGES + 1)
    for i, row in enumerate(rows):
        gallery.upsert(f"s{i}", row)
    return gallery


def _per_call(fn, calls: int) -> float:
    """Median seconds of `calls` calls of fn(i)."""
    times = []
    for i in range(calls):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def bench_k_reciprocal_graph(quick: bool) -> list[dict]:
    rows: list[dict] = []
    for g in (10_000,) if quick else (10_000, 100_000):
        rows.append(_k_reciprocal_at(g, rows[0] if rows else None))
    return rows


def _k_reciprocal_at(g: int, at_10k: dict | None) -> dict:
    """One gallery size; the dense path runs when there is no 10k row to scale from."""
    x = clustered(seed=g, n=g + QUERIES + CHANGES, d=D, clusters=max(30, g // 30))
    gallery, queries, fresh = _gallery(x[:g]), x[g : g + QUERIES], x[g + QUERIES :]
    graph = gallery.neighbour_graph
    start = time.perf_counter()
    graph.build(gallery.matrix, 20, threads=0)
    build_s = time.perf_counter() - start
    query_s = _per_call(lambda i: graph.k_reciprocal(queries[i], gallery.matrix, threads=1), QUERIES)
    if at_10k is None:
        dense_s = best_time(lambda: rerank.k_reciprocal(queries[:1], gallery.matrix, threads=1), 2, budget_s=5.0)
        agrees = bool(np.allclose(graph.k_reciprocal(queries[0], gallery.matrix),
                                  rerank.k_reciprocal(queries[:1], gallery.matrix)[0], atol=1e-5))
    else:
        dense_s, agrees = at_10k["dense_1t_s"] * (g / at_10k["G"]) ** 2, None
    append_s = _per_call(lambda i: gallery.upsert(f"new{i}", fresh[i]), CHANGES)
    overwrite_s = _per_call(lambda i: gallery.upsert(f"s{i}", fresh[-1 - i]), CHANGES)
    delete_s = _per_call(lambda i: gallery.delete(f"s{100 + i}"), CHANGES)
    row = {
        "section": "k_reciprocal_graph", "G": g, "d": D, "graph_query_1t_s": query_s, "dense_1t_s": dense_s,
        "dense_estimated": at_10k is not None, "ratio_1t": dense_s / query_s, "build_s": build_s,
        "build_threads": os.cpu_count(), "append_s": append_s, "overwrite_s": overwrite_s, "delete_s": delete_s,
        "agrees": agrees,
    }
    print(f"k_reciprocal G={g:>6} d={D}  graph 1t {query_s * 1e3:7.2f} ms/query  dense 1t "
          f"{dense_s * 1e3:9.0f} ms{' (estimate)' if row['dense_estimated'] else ''}  build {build_s:6.1f} s  "
          f"append {append_s * 1e3:6.2f} ms  overwrite {overwrite_s * 1e3:6.2f} ms  delete {delete_s * 1e3:6.2f} ms",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    args = parser.parse_args()
    print(f"kernels: {_rerank.kernels()}; cores: {os.cpu_count()}")

    started = time.perf_counter()
    rows = bench_k_reciprocal_graph(args.quick)

    print("\nratios (dense time / graph time per query, one thread; > 1 means the graph is faster)")
    for r in rows:
        agree = "" if r["agrees"] in (None, True) else "  RESULTS DIFFER"
        note = " (dense estimated from 10k x (G/10k)^2)" if r["dense_estimated"] else ""
        print(f"  k_reciprocal G={r['G']:>6} d={r['d']}  {r['ratio_1t']:9.0f}x{note}{agree}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "kernels": _rerank.kernels(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "seconds": time.perf_counter() - started, "rows": rows,
    }, indent=2))
    print(f"\nwritten {RESULTS.relative_to(REPO)} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
