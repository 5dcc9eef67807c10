#include "matrix.hpp"

#include <cmath>

namespace rerank {

void check_pair(const MatrixView& queries, const MatrixView& gallery) {
    if (queries.rows == 0) throw InvalidInput("queries is empty: need at least one row");
    if (gallery.rows == 0) throw InvalidInput("gallery is empty: need at least one row");
    if (queries.cols == 0 || gallery.cols == 0) throw InvalidInput("embeddings have zero dimensions");
    if (queries.cols != gallery.cols)
        throw InvalidInput("dimension mismatch: queries have " + std::to_string(queries.cols) +
                           " columns, gallery has " + std::to_string(gallery.cols));
}

void check_finite(const MatrixView& m, const char* what) {
    const std::size_t n = m.rows * m.cols;
    for (std::size_t i = 0; i < n; ++i)
        if (!std::isfinite(m.data[i]))
            throw InvalidInput(std::string(what) + " row " + std::to_string(i / m.cols) + " contains NaN or inf");
}

void check_row_norm(float sq_norm, std::size_t row, const char* what) {
    if (!std::isfinite(sq_norm))
        throw InvalidInput(std::string(what) + " row " + std::to_string(row) +
                           " contains NaN or inf (or values too large to square in float32)");
    if (sq_norm == 0.0f)
        throw InvalidInput(std::string(what) + " row " + std::to_string(row) +
                           " is all zeros: its cosine similarity is undefined");
}

}  // namespace rerank
