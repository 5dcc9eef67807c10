// Work is split as in cosine.cpp: gallery tiles that fit in L2 times blocks of 64 queries, tiles
// innermost, so a worker meets one query block's tiles in increasing order and its TopK selectors
// see increasing indices. Scores of a tile land in the worker's buffer (top-k) or in place (scores).
#include "compact_topk.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "parallel.hpp"
#include "topk.hpp"

namespace rerank {
namespace {

constexpr std::size_t kQueryTile = 64;
constexpr std::size_t kTileBytes = 96 * 1024;

std::size_t value_bytes(CompactType type) { return type == CompactType::f16 ? 2 : 1; }

void check(const MatrixView& queries, const CompactView& gallery) {
    check_pair(queries, MatrixView{nullptr, gallery.rows, gallery.cols});
    check_finite(queries, "queries");
    for (std::size_t c = 0; c < gallery.rows; ++c)
        if (!(std::isfinite(gallery.scale[c]) && gallery.scale[c] > 0.0f))
            throw InvalidInput("gallery scale " + std::to_string(c) + " must be finite and positive");
}

// Queries scaled to unit length (in double, so the scale adds no error of its own).
std::vector<float> unit(const MatrixView& queries) {
    std::vector<float> out(queries.rows * queries.cols);
    for (std::size_t i = 0; i < queries.rows; ++i) {
        const float* q = queries.row(i);
        double sq = 0.0;
        for (std::size_t t = 0; t < queries.cols; ++t) sq += double(q[t]) * q[t];
        check_row_norm(static_cast<float>(sq), i, "queries");
        const double inv = 1.0 / std::sqrt(sq);
        for (std::size_t t = 0; t < queries.cols; ++t) out[i * queries.cols + t] = static_cast<float>(q[t] * inv);
    }
    return out;
}

struct Plan {
    std::size_t tile, tiles, tasks;
    unsigned threads;
};

Plan plan(const MatrixView& queries, const CompactView& gallery, long threads) {
    Plan p;
    p.tile = std::clamp<std::size_t>(kTileBytes / (value_bytes(gallery.type) * gallery.cols), 16, 4096);
    p.tiles = (gallery.rows + p.tile - 1) / p.tile;
    p.tasks = (queries.rows + kQueryTile - 1) / kQueryTile * p.tiles;
    p.threads = resolve_threads(threads, p.tasks, queries.rows * gallery.rows * gallery.cols);
    return p;
}

// Scores of queries [q0, q0 + nq) against gallery rows [g0, g0 + ng) into out (row stride ld).
void score(const CompactKernels& kern, const float* unit, std::size_t q0, std::size_t nq, const CompactView& g,
           std::size_t g0, std::size_t ng, float* out, std::size_t ld) {
    const std::size_t d = g.cols;
    if (g.type == CompactType::f16)
        kern.dot_f16(unit + q0 * d, nq, static_cast<const std::uint16_t*>(g.data) + g0 * d, g.scale + g0, ng, d, out, ld);
    else
        kern.dot_i8(unit + q0 * d, nq, static_cast<const std::int8_t*>(g.data) + g0 * d, g.scale + g0, ng, d, out, ld);
}

}  // namespace

std::size_t compact_topk(const MatrixView& queries, const CompactView& gallery, std::size_t k, long threads,
                         const CompactKernels& kern, std::int64_t* indices, float* scores) {
    check(queries, gallery);
    if (k == 0) throw InvalidInput("k must be at least 1");
    k = std::min(k, gallery.rows);
    const std::size_t nq = queries.rows;
    const std::vector<float> q = unit(queries);
    const Plan p = plan(queries, gallery, threads);

    struct Worker {
        std::vector<TopK<float>> best;  // per query; values are negated cosines
        std::vector<float> dots;
    };
    std::vector<Worker> workers(p.threads);
    for (auto& w : workers) {
        w.best.assign(nq, TopK<float>(k));
        w.dots.resize(std::min(nq, kQueryTile) * p.tile);
    }
    parallel_for(p.tasks, p.threads, [&](std::size_t task, unsigned worker) {
        Worker& w = workers[worker];
        const std::size_t q0 = task / p.tiles * kQueryTile, nrows = std::min(kQueryTile, nq - q0);
        const std::size_t g0 = task % p.tiles * p.tile, ng = std::min(p.tile, gallery.rows - g0);
        score(kern, q.data(), q0, nrows, gallery, g0, ng, w.dots.data(), ng);
        for (std::size_t r = 0; r < nrows; ++r) {
            float* dots = w.dots.data() + r * ng;
            for (std::size_t c = 0; c < ng; ++c) dots[c] = -dots[c];
            w.best[q0 + r].push_all(dots, ng, static_cast<std::int64_t>(g0));
        }
    });

    write_merged_best(workers, nq, k, indices, scores);
    return k;
}

void compact_scores(const MatrixView& queries, const CompactView& gallery, long threads, const CompactKernels& kern,
                    float* out) {
    check(queries, gallery);
    const std::vector<float> q = unit(queries);
    const Plan p = plan(queries, gallery, threads);
    parallel_for(p.tasks, p.threads, [&](std::size_t task, unsigned) {
        const std::size_t q0 = task / p.tiles * kQueryTile, nrows = std::min(kQueryTile, queries.rows - q0);
        const std::size_t g0 = task % p.tiles * p.tile, ng = std::min(p.tile, gallery.rows - g0);
        score(kern, q.data(), q0, nrows, gallery, g0, ng, out + q0 * gallery.rows + g0, gallery.rows);
    });
}

}  // namespace rerank
