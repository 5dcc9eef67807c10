// A gallery's neighbour graph: what k-reciprocal re-ranking needs to know of the gallery
// rows among themselves, kept up to date row by row, so that one query costs O(G * d)
// plus the neighbourhoods it touches instead of the (Q + G)^2 * d of k_reciprocal.hpp.
//
// For every row it keeps its nearest rows (itself first) with their squared distances,
// always an exact prefix of the row's ranking and at least k1_max + 1 long (or every row
// when the gallery is smaller), plus a margin so that a delete rarely forces a refill; and
// its few farthest rows, whose first is the row's largest distance to the gallery (the
// reference divides a row by its largest distance, and a query may only raise it); and, per
// row, the rows that keep it among their nearest (reverse lists), which a query walks.
// Distances are squared Euclidean in double, from float32 rows, as the dense path ranks them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels.hpp"
#include "matrix.hpp"

namespace rerank {

class NeighbourGraph {
public:
    static constexpr std::size_t kFar = 4;  // farthest rows kept per row

    struct Entry {
        double sq;          // squared distance
        std::int32_t row;
    };

    // Answers queries with k1 <= k1_max and k2 <= k1_max + 1; margin extra neighbours per row.
    NeighbourGraph(std::size_t k1_max, std::size_t margin);

    std::size_t k1_max() const { return depth_ - 1; }
    std::size_t capacity() const { return capacity_; }  // neighbours kept per row at most
    std::size_t size() const { return rows_; }
    std::size_t dim() const { return dim_; }
    bool built() const { return built_; }

    // From scratch, O(G^2 d) in blocks of rows on `threads` threads: float32 panels, made exact in double.
    void build(const MatrixView& gallery, long threads, const Kernels& kern);
    // Row `row` of gallery was written: appended when row == size(), else overwritten. O(G d).
    void upserted(const MatrixView& gallery, std::size_t row);
    // Row `row` was deleted and the last row moved into it; gallery is the matrix after the move. O(G d)
    // per row whose kept neighbours ran short or whose farthest went.
    void deleted(const MatrixView& gallery, std::size_t row);

    // The k-reciprocal distances of one query (dim floats) to every gallery row, written to out (G floats):
    // the row of k_reciprocal(query[None], gallery, k1, k2, lambda) of k_reciprocal.hpp.
    void k_reciprocal(const float* query, std::size_t dim, const MatrixView& gallery, std::size_t k1,
                      std::size_t k2, double lambda, long threads, float* out) const;

    // What the graph keeps for a row: its nearest (nearest first) and its farthest (farthest first).
    std::vector<Entry> nearest(std::size_t row) const;
    std::vector<Entry> farthest(std::size_t row) const;
    // The rows whose kept neighbours include `row`, in no order.
    std::vector<std::int32_t> holders(std::size_t row) const;

private:
    friend class GraphQuery;

    const Entry* near(std::size_t row) const { return near_.data() + row * capacity_; }
    Entry* near(std::size_t row) { return near_.data() + row * capacity_; }
    Entry* far(std::size_t row) { return far_.data() + row * kFar; }
    void build_float32(const MatrixView& gallery, long threads, double max_sq, const Kernels& kern);
    void check_gallery(const MatrixView& gallery, std::size_t rows) const;
    void check_row(std::size_t row, std::size_t end) const;  // row < end, or a ValueError
    // dist[j]: the squared distance of row `row` to row j, for every row.
    void distances_from(const MatrixView& gallery, std::size_t row, std::vector<double>& dist) const;
    // Row `row`'s lists from its squared distances to every row (dist[row] is 0).
    void fill_row(std::size_t row, const double* dist, std::size_t n);
    // fill_row, and the holders of the row's old and new neighbours told.
    void refill_row(std::size_t row, const double* dist);
    void hold(std::int32_t row, std::int32_t holder) { holders_[static_cast<std::size_t>(row)].push_back(holder); }
    void unhold(std::int32_t row, std::int32_t holder);
    void refill_short_rows(const MatrixView& gallery);
    // Adds (sq, row) to row j's lists, which cover `covered` rows so far.
    void offer(std::size_t j, double sq, std::int32_t row, std::size_t covered);

    std::size_t depth_, capacity_;
    std::size_t rows_ = 0, dim_ = 0;
    bool built_ = false;
    std::vector<double> sq_norm_;                   // per row
    std::vector<Entry> near_, far_;                 // rows_ x capacity_, rows_ x kFar
    std::vector<std::uint32_t> near_count_, far_count_;
    std::vector<std::vector<std::int32_t>> holders_;  // per row: who keeps it among their nearest (reverse lists)
};

}  // namespace rerank
