// Streaming selection of the k smallest (value, index) pairs.
//
// Ranking only needs the best k of n, so instead of sorting n values the selector
// keeps a bounded heap of the best k so far: one comparison per value with the
// worst kept one, O(log k) for the few that beat it, O(k log k) at the end.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace rerank {

template <class V>
struct Ranked {
    V value;
    std::int64_t index;
};

// Smaller value first; equal values by lower index (the order every API result promises).
// A function object rather than a function, so that the sorts inline it.
struct RanksBefore {
    template <class V>
    bool operator()(const Ranked<V>& a, const Ranked<V>& b) const {
        return a.value < b.value || (a.value == b.value && a.index < b.index);
    }
};

template <class V>
class TopK {
public:
    explicit TopK(std::size_t k) : k_(k) { heap_.reserve(k); }

    // Indices must arrive in increasing order: a later value equal to the worst kept
    // one then ranks after it, so one comparison rejects it.
    void push(V value, std::int64_t index) {
        if (heap_.size() < k_) {
            heap_.push_back({value, index});
            std::push_heap(heap_.begin(), heap_.end(), RanksBefore{});
        } else if (value < heap_.front().value) {
            std::pop_heap(heap_.begin(), heap_.end(), RanksBefore{});
            heap_.back() = {value, index};
            std::push_heap(heap_.begin(), heap_.end(), RanksBefore{});
        }
    }

    // push(values[j], first + j) for j in [0, n).
    void push_all(const V* values, std::size_t n, std::int64_t first) {
        std::size_t j = 0;
        for (; j < n && heap_.size() < k_; ++j) push(values[j], first + static_cast<std::int64_t>(j));
        if (heap_.empty()) return;
        V worst = heap_.front().value;
        for (; j < n; ++j)
            if (values[j] < worst) {
                push(values[j], first + static_cast<std::int64_t>(j));
                worst = heap_.front().value;
            }
    }

    // Kept entries, unordered.
    const std::vector<Ranked<V>>& candidates() const { return heap_; }

    // The best k (fewer if fewer were pushed), in rank order; call reset() before pushing again.
    const std::vector<Ranked<V>>& finish() {
        std::sort_heap(heap_.begin(), heap_.end(), RanksBefore{});
        return heap_;
    }

    // Empties the selector for another stream, keeping its memory.
    void reset() { heap_.clear(); }

    // Keeps the best k of items, in rank order.
    static void select_best(std::vector<Ranked<V>>& items, std::size_t k) {
        if (items.size() > k) {
            std::nth_element(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(k - 1), items.end(),
                             RanksBefore{});
            items.resize(k);
        }
        std::sort(items.begin(), items.end(), RanksBefore{});
    }

private:
    std::size_t k_;
    std::vector<Ranked<V>> heap_;  // a max-heap: the worst kept entry on top
};

// The k smallest (value, index) of a whole row: out[0, min(k, n)) in rank order
// (out is left n long, so that its memory is reused from row to row).
//
// Faster than streaming the row through a TopK when the row is at hand: the k-th
// smallest of the minima of chunks of the row is a threshold with at least k values
// at or below it (one per chunk), and usually not many more, so one branch-free pass
// collects a short list to select from. `scratch` is working space kept by the caller.
template <class V>
void smallest_k(const V* row, std::size_t n, std::size_t k, std::vector<V>& scratch, std::vector<Ranked<V>>& out) {
    out.resize(n);  // a no-op once the caller's buffer has grown to n
    std::size_t kept = n;
    std::size_t chunk = 16;
    while (chunk > 1 && n / chunk < k) chunk /= 2;
    if (chunk > 1) {
        const std::size_t chunks = n / chunk;
        scratch.resize(chunks);
        for (std::size_t c = 0; c < chunks; ++c) {
            V m = row[c * chunk];
            for (std::size_t j = 1; j < chunk; ++j) m = row[c * chunk + j] < m ? row[c * chunk + j] : m;
            scratch[c] = m;
        }
        std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(k - 1), scratch.end());
        const V threshold = scratch[k - 1];
        kept = 0;
        for (std::size_t j = 0; j < n; ++j) {  // without a branch: each value is written, kept or not
            out[kept] = {row[j], static_cast<std::int64_t>(j)};
            kept += row[j] <= threshold;
        }
    } else {
        for (std::size_t j = 0; j < n; ++j) out[j] = {row[j], static_cast<std::int64_t>(j)};
    }
    if (kept > k)
        std::nth_element(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k - 1),
                         out.begin() + static_cast<std::ptrdiff_t>(kept), RanksBefore{});
    std::sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(std::min(k, kept)), RanksBefore{});
}

}  // namespace rerank
