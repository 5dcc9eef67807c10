// Alpha query expansion (alpha-QE, Radenovic et al., TPAMI 2018), then cosine ranking.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels.hpp"
#include "matrix.hpp"

namespace rerank {

// Each query is replaced by the unit-length sum of itself (weight 1) and its
// `neighbours` most similar gallery rows, unit-length, weighted by similarity^alpha
// (rows with similarity <= 0 add nothing); the expanded queries are then ranked
// like cosine_topk. Returns k = min(k, gallery.rows).
std::size_t query_expansion(const MatrixView& queries, const MatrixView& gallery, std::size_t k, double alpha,
                            std::size_t neighbours, long threads, const Kernels& kern, std::int64_t* indices,
                            float* scores);

}  // namespace rerank
