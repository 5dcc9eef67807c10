// Cosine scores and top-k of float32 queries against a compact gallery (float16 or int8 rows).
//
// A compact row stores a unit vector approximately; `scale[c]` is 1 / |stored row c| (for int8 it also
// undoes the row's quantisation step), so (q . row) * scale is the exact cosine of the stored vector.
#pragma once

#include <cstddef>
#include <cstdint>

#include "compact_kernels.hpp"
#include "matrix.hpp"

namespace rerank {

enum class CompactType { f16, i8 };

struct CompactView {
    const void* data;  // rows x cols values of `type` (float16 as its bits), row-major
    CompactType type;
    std::size_t rows;
    std::size_t cols;
    const float* scale;  // rows values, finite and positive
};

// For each query, the k best gallery rows (descending cosine, ties by lower index) and their cosines,
// row-major (queries.rows x k) with k = min(k, gallery.rows). Returns that k.
std::size_t compact_topk(const MatrixView& queries, const CompactView& gallery, std::size_t k, long threads,
                         const CompactKernels& kern, std::int64_t* indices, float* scores);

// The cosine of every query with every gallery row, row-major (queries.rows x gallery.rows).
void compact_scores(const MatrixView& queries, const CompactView& gallery, long threads, const CompactKernels& kern,
                    float* out);

}  // namespace rerank
