#include "query_expansion.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "cosine.hpp"

namespace rerank {
namespace {

void add_unit(const float* x, std::size_t d, double weight, double* acc) {
    double sq = 0.0;
    for (std::size_t t = 0; t < d; ++t) sq += double(x[t]) * x[t];
    const double scale = weight / std::sqrt(sq);
    for (std::size_t t = 0; t < d; ++t) acc[t] += scale * x[t];
}

}  // namespace

std::size_t query_expansion(const MatrixView& queries, const MatrixView& gallery, std::size_t k, double alpha,
                            std::size_t neighbours, long threads, const Kernels& kern, std::int64_t* indices,
                            float* scores) {
    check_pair(queries, gallery);
    if (k == 0) throw InvalidInput("k must be at least 1");
    if (!(alpha >= 0.0) || !std::isfinite(alpha)) throw InvalidInput("alpha must be a finite number >= 0");
    if (neighbours == 0) throw InvalidInput("neighbours must be at least 1");
    const std::size_t nq = queries.rows, d = queries.cols;

    // cosine_topk validates every row (finite, non-zero) before anything below reads it.
    const std::size_t n = std::min(neighbours, gallery.rows);
    std::vector<std::int64_t> near(nq * n);
    std::vector<float> sim(nq * n);
    cosine_topk(queries, gallery, n, threads, kern, near.data(), sim.data());

    std::vector<float> expanded(nq * d);
    std::vector<double> acc(d);
    for (std::size_t i = 0; i < nq; ++i) {
        std::fill(acc.begin(), acc.end(), 0.0);
        add_unit(queries.row(i), d, 1.0, acc.data());
        for (std::size_t j = 0; j < n; ++j) {
            const double s = sim[i * n + j];
            if (s > 0.0) add_unit(gallery.row(static_cast<std::size_t>(near[i * n + j])), d, std::pow(s, alpha), acc.data());
        }
        for (std::size_t t = 0; t < d; ++t) expanded[i * d + t] = static_cast<float>(acc[t]);
    }
    // cosine_topk normalises the expanded queries itself.
    return cosine_topk(MatrixView{expanded.data(), nq, d}, gallery, k, threads, kern, indices, scores);
}

}  // namespace rerank
