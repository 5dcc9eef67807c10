// Borrowed row-major float32 matrices and the checks every entry point makes on them.
#pragma once

#include <cstddef>
#include <string>

#include "invalid_input.hpp"

namespace rerank {

struct MatrixView {
    const float* data;
    std::size_t rows;
    std::size_t cols;
    const float* row(std::size_t i) const { return data + i * cols; }
};

// Both non-empty, same number of columns.
void check_pair(const MatrixView& queries, const MatrixView& gallery);

// No NaN or infinity anywhere in m (named `what` in the message).
void check_finite(const MatrixView& m, const char* what);

// A row whose squared norm is NaN, infinite or zero has no direction to compare.
void check_row_norm(float sq_norm, std::size_t row, const char* what);

}  // namespace rerank
