// k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with
// k-reciprocal Encoding", CVPR 2017), with the semantics of the authors' widely used
// Python code that takes query-gallery, query-query and gallery-gallery distances.
#pragma once

#include <cstddef>

#include "kernels.hpp"
#include "matrix.hpp"

namespace rerank {

// Writes the final (queries.rows x gallery.rows) distances, row-major, into out.
// Over the N = Q + G points: squared Euclidean distances, each row divided by its
// maximum; k-reciprocal sets over the k1 + 1 nearest, expanded by the sets (over
// round(k1 / 2) + 1, half to even) of members sharing more than 2/3 of them;
// weights exp(-d) normalised per row; rows averaged over the k2 nearest (k2 > 1);
// Jaccard distance; final = (1 - lambda) * jaccard + lambda * distance.
// k1 + 1 or k2 beyond N mean N, as slicing does in the reference code.
// Neighbour ranks and distances are those of double-precision distances (float32 only
// narrows down the candidates), so they do not hinge on float32 rounding.
void k_reciprocal(const MatrixView& queries, const MatrixView& gallery, std::size_t k1, std::size_t k2,
                  double lambda, long threads, const Kernels& kern, float* out);

}  // namespace rerank
