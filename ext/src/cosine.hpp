// Cosine top-k: the k gallery rows most similar to each query.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels.hpp"
#include "matrix.hpp"

namespace rerank {

// Writes, for each query, the k best gallery indices (descending cosine similarity,
// ties by lower index) and their similarities into row-major (queries.rows x k)
// outputs, where k = min(k, gallery.rows). Returns that k.
std::size_t cosine_topk(const MatrixView& queries, const MatrixView& gallery, std::size_t k, long threads,
                        const Kernels& kern, std::int64_t* indices, float* scores);

}  // namespace rerank
