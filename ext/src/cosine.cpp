// The gallery is split into tiles that fit in L2 and the queries into blocks of 64;
// a worker ranks one tile for one block of queries at a time, so a gallery row is read
// from memory once per 64 queries, and threads have work whether there are many
// queries or one. Each worker keeps its own top-k per query and the
// workers' candidates are merged at the end. Gallery norms are computed tile by
// tile alongside the dot products, which also finds NaN/inf rows at no extra pass.
#include "cosine.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.hpp"
#include "topk.hpp"

namespace rerank {
namespace {

constexpr std::size_t kQueryTile = 64;         // queries per dot_f32 call
constexpr std::size_t kTileBytes = 96 * 1024;  // gallery bytes per task: well inside L2

std::size_t gallery_tile_rows(std::size_t d) {
    return std::clamp<std::size_t>(kTileBytes / (sizeof(float) * d), 12, 1024);
}

// Queries scaled to unit length; the scale is computed in double so that it adds no error of its own.
std::vector<float> unit_queries(const MatrixView& queries, const Kernels& kern) {
    std::vector<float> sq(queries.rows);
    kern.sqnorm_f32(queries.data, queries.rows, queries.cols, sq.data());
    std::vector<float> unit(queries.rows * queries.cols);
    for (std::size_t i = 0; i < queries.rows; ++i) {
        check_row_norm(sq[i], i, "queries");
        double norm = 0.0;
        for (std::size_t t = 0; t < queries.cols; ++t) norm += double(queries.row(i)[t]) * queries.row(i)[t];
        const double inv = 1.0 / std::sqrt(norm);
        for (std::size_t t = 0; t < queries.cols; ++t)
            unit[i * queries.cols + t] = static_cast<float>(queries.row(i)[t] * inv);
    }
    return unit;
}

struct Worker {
    std::vector<TopK<float>> best;  // per query; values are negated similarities
    std::vector<float> dots;        // kQueryTile x tile rows
    std::vector<float> inv_norm;    // tile rows
};

}  // namespace

std::size_t cosine_topk(const MatrixView& queries, const MatrixView& gallery, std::size_t k, long threads,
                        const Kernels& kern, std::int64_t* indices, float* scores) {
    check_pair(queries, gallery);
    if (k == 0) throw InvalidInput("k must be at least 1");
    k = std::min(k, gallery.rows);
    const std::size_t nq = queries.rows, d = queries.cols;
    const std::vector<float> unit = unit_queries(queries, kern);

    // Tasks: (block of queries, gallery tile), gallery tiles innermost, so a worker meets the
    // tiles of one query block in increasing order, as its TopK selectors require.
    const std::size_t tile = gallery_tile_rows(d);
    const std::size_t tiles = (gallery.rows + tile - 1) / tile;
    const std::size_t tasks = (nq + kQueryTile - 1) / kQueryTile * tiles;
    const unsigned nthreads = resolve_threads(threads, tasks, nq * gallery.rows * d);

    std::vector<Worker> workers(nthreads);
    for (auto& w : workers) {
        w.best.assign(nq, TopK<float>(k));
        w.dots.resize(std::min(nq, kQueryTile) * tile);
        w.inv_norm.resize(tile);
    }
    parallel_for(tasks, nthreads, [&](std::size_t task, unsigned worker) {
        Worker& w = workers[worker];
        const std::size_t q0 = task / tiles * kQueryTile, nrows = std::min(kQueryTile, nq - q0);
        const std::size_t g0 = task % tiles * tile, ng = std::min(tile, gallery.rows - g0);
        const float* g = gallery.row(g0);
        kern.sqnorm_f32(g, ng, d, w.inv_norm.data());
        for (std::size_t c = 0; c < ng; ++c) {
            check_row_norm(w.inv_norm[c], g0 + c, "gallery");
            w.inv_norm[c] = 1.0f / std::sqrt(w.inv_norm[c]);
        }
        kern.dot_f32(unit.data() + q0 * d, nrows, g, ng, d, w.dots.data(), ng);
        for (std::size_t r = 0; r < nrows; ++r) {
            TopK<float>& best = w.best[q0 + r];
            const float* dots = w.dots.data() + r * ng;
            for (std::size_t c = 0; c < ng; ++c)
                best.push(-(dots[c] * w.inv_norm[c]), static_cast<std::int64_t>(g0 + c));
        }
    });

    write_merged_best(workers, nq, k, indices, scores);
    return k;
}

}  // namespace rerank
