"""Gallery-level re-ranking, measured side by side in one run.

- k-reciprocal per query: a gallery's neighbour graph (streams.neighbour_graph) against the dense
  streams.rerank.k_reciprocal of the same query, G = 10k and 100k, d = 128, clustered rows, one
  thread. The dense path runs at 10k only; at 100k its time is the 10k one scaled by G^2 (it is
  O((Q + G)^2 d)), marked as an estimate. Also: the graph's bulk build (all cores) and what one
  append, overwrite and delete through Gallery costs once the graph is built.
- approximate cosine top-10 at G = 1M, d = 128, clustered rows, Q = 1, one thread: our index through
  Gallery (usearch HNSW, int8 graph, candidates re-scored exactly; streams.ann_index) against faiss
  IndexHNSWFlat (same M, efConstruction, efSearch), faiss IndexFlatIP, numpy and our exact float32 and
  float16 scans: build seconds (all cores), recall@10 against the exact top 10, p50 per query. Also the
  exact scan's p50 at smaller G (where FACESTREAM_GALLERY_INDEX_MIN starts paying), and recovery's
  two ways to an index: rebuilding it from the rows against saving it and loading (or memory-mapping) it.

Each section is a function returning its rows; main prints the ratios last and writes every
timing to perf/results/bench_gallery.json.

    .venv/bin/python -m perf.bench_gallery [--quick] [--only {k_reciprocal,ann}]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from threadpoolctl import threadpool_limits

from perf.bench_rerank import best_time, clustered, numpy_topk
from streams import _rerank, ann_index, rerank
from streams.gallery import Gallery
from streams.rows import Rows
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


def bench_ann(quick: bool) -> list[dict]:
    g = 100_000 if quick else 1_000_000
    x = clustered(seed=14, n=g + QUERIES * 10, d=D, clusters=max(30, g // 30))
    rows, queries = x[:g], x[g:]
    truth, _ = Rows.wrap(rows).topk(queries, 10, threads=0)
    with threadpool_limits(1, user_api="blas"):  # numpy, like every other search here, on one thread
        return [*_ann_at(g, rows, queries, truth), *_exact_crossover(rows, queries)]


def _ann_at(g: int, rows: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    import faiss

    ef = ann_index.DEFAULT_EF
    gallery = Gallery(D, capacity=g, index_min=g, index_ef=ef)
    for i, row in enumerate(rows[:-1]):
        gallery.upsert(f"s{i}", row)
    start = time.perf_counter()
    gallery.upsert(f"s{g - 1}", rows[-1])  # the gallery reaches index_min: the background build starts
    gallery.index.wait()
    ours_build_s = time.perf_counter() - start
    f16 = Rows(D, "float16", g)
    for i, row in enumerate(rows):
        f16.set(i, row)
    hnsw = faiss.IndexHNSWFlat(D, ann_index.CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction, hnsw.hnsw.efSearch = ann_index.EXPANSION_ADD, ef
    faiss.omp_set_num_threads(os.cpu_count())
    start = time.perf_counter()
    hnsw.add(rows)
    faiss_build_s = time.perf_counter() - start
    flat = faiss.IndexFlatIP(D)
    start = time.perf_counter()
    flat.add(rows)
    flat_build_s = time.perf_counter() - start
    faiss.omp_set_num_threads(1)
    searches = {
        "ours_index": (ours_build_s, lambda q: gallery.nearest(q, 10)[0][:10]),
        "faiss_hnsw": (faiss_build_s, lambda q: hnsw.search(q[None, :], 10)[1][0]),
        "faiss_flat": (flat_build_s, lambda q: flat.search(q[None, :], 10)[1][0]),
        "numpy": (0.0, lambda q: numpy_topk(q[None, :], rows, 10)[0]),
        "ours_exact_f32": (0.0, lambda q: gallery.rows.topk(q[None, :], 10, threads=1)[0][0]),
        "ours_exact_f16": (0.0, lambda q: f16.topk(q[None, :], 10, threads=1)[0][0]),
    }
    out = []
    for name, (build_s, search) in searches.items():
        found = [search(q) for q in queries]
        hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
        recall = float(np.mean(hits)) / 10
        p50 = _per_call(lambda i: search(queries[i]), len(queries))
        out.append({"section": "ann", "name": name, "G": g, "d": D, "build_s": build_s, "recall_at_10": recall,
                    "p50_s": p50})
        print(f"ann G={g} {name:15} build {build_s:7.1f} s  recall@10 {recall:.4f}  p50 {p50 * 1e3:7.3f} ms",
              flush=True)
    return [*out, _persisted(gallery, ours_build_s, queries)]


def _persisted(gallery: Gallery, rebuild_s: float, queries: np.ndarray) -> dict:
    """Recovery from a saved index (save once, then load or memory-map it) against rebuilding it from the rows."""
    graph = gallery.index.graph
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gallery.usearch"
        start = time.perf_counter()
        graph.save(str(path))
        save_s = time.perf_counter() - start
        loaded = ann_index.new_index(gallery.dim, gallery.index.ef)
        start = time.perf_counter()
        loaded.load(str(path))
        load_s = time.perf_counter() - start
        viewed = ann_index.new_index(gallery.dim, gallery.index.ef)
        start = time.perf_counter()
        viewed.view(str(path))
        view_s = time.perf_counter() - start
        same = all(np.array_equal(loaded.search(q, 10, threads=1).keys, graph.search(q, 10, threads=1).keys)
                   for q in queries)
        file_bytes = path.stat().st_size
    row = {"section": "ann_persisted", "G": len(gallery), "rebuild_s": rebuild_s, "save_s": save_s,
           "load_s": load_s, "view_s": view_s, "file_bytes": file_bytes, "loaded_answers_the_same": same,
           "index_bytes": gallery.index.nbytes, "rows_bytes": gallery.nbytes}
    print(f"ann G={len(gallery)} rebuild {rebuild_s:.1f} s  save {save_s:.2f} s  load {load_s:.2f} s  "
          f"memory-map {view_s:.3f} s  file {file_bytes / 2**20:.0f} MiB  loaded answers the same: {same}", flush=True)
    print(f"ann G={len(gallery)} our index takes {row['index_bytes'] / 2**20:.0f} MiB in memory beside the rows' "
          f"{row['rows_bytes'] / 2**20:.0f} MiB", flush=True)
    return row


def _exact_crossover(rows: np.ndarray, queries: np.ndarray) -> list[dict]:
    """The exact float32 scan's p50 (one thread) at smaller sizes: where the index starts to pay."""
    out = []
    for g in (size for size in (10_000, 50_000, 100_000, 200_000) if size <= len(rows)):
        prefix = Rows.wrap(rows[:g])
        p50 = _per_call(lambda i: prefix.topk(queries[i][None, :], 10, threads=1), len(queries))
        out.append({"section": "ann_crossover", "G": g, "exact_f32_p50_s": p50})
        print(f"exact f32 scan G={g:>7} p50 {p50 * 1e3:6.3f} ms", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (a smoke run)")
    parser.add_argument("--only", choices=("k_reciprocal", "ann"), help="run one section")
    args = parser.parse_args()
    print(f"kernels: {_rerank.kernels()}; cores: {os.cpu_count()}")

    started = time.perf_counter()
    rows = []
    if args.only in (None, "k_reciprocal"):
        rows += bench_k_reciprocal_graph(args.quick)
    if args.only in (None, "ann"):
        rows += bench_ann(args.quick)

    graph_rows = [r for r in rows if r["section"] == "k_reciprocal_graph"]
    if graph_rows:
        print("\nratios (dense time / graph time per query, one thread; > 1 means the graph is faster)")
    for r in graph_rows:
        agree = "" if r["agrees"] in (None, True) else "  RESULTS DIFFER"
        note = " (dense estimated from 10k x (G/10k)^2)" if r["dense_estimated"] else ""
        print(f"  k_reciprocal G={r['G']:>6} d={r['d']}  {r['ratio_1t']:9.0f}x{note}{agree}")
    ann = {r["name"]: r for r in rows if r["section"] == "ann"}
    if ann:
        ours = ann["ours_index"]
        print(f"\nratios at G={ours['G']} (p50 per query, one thread; > 1 means our index is faster; "
              f"our index's recall@10 {ours['recall_at_10']:.4f})")
        for name in ("ours_exact_f32", "ours_exact_f16", "numpy", "faiss_flat", "faiss_hnsw"):
            print(f"  {name:15} p50 / our index p50   {ann[name]['p50_s'] / ours['p50_s']:8.2f}x")
        print(f"  faiss_hnsw build / our index build   {ann['faiss_hnsw']['build_s'] / ours['build_s']:8.2f}x")
        (kept,) = [r for r in rows if r["section"] == "ann_persisted"]
        print(f"  rebuild / (save + load)              {kept['rebuild_s'] / (kept['save_s'] + kept['load_s']):8.1f}x")
        print(f"  rebuild / load                       {kept['rebuild_s'] / kept['load_s']:8.1f}x")
        print(f"  rebuild / memory-map                 {kept['rebuild_s'] / kept['view_s']:8.0f}x")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "kernels": _rerank.kernels(), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "seconds": time.perf_counter() - started, "rows": rows,
    }, indent=2))
    print(f"\nwritten {RESULTS.relative_to(REPO)} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
