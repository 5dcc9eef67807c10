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

// A value with at least k of the row's n >= k values at or below it, and usually not
// many more: the k-th smallest of the minima of chunks of the row (one value per chunk
// is at or below it). When the row is too short for chunks, its maximum.
template <class V>
V chunk_threshold(const V* row, std::size_t n, std::size_t k, std::vector<V>& scratch) {
    constexpr std::size_t kLanes = 8;
    std::size_t chunk = 32;
    while (chunk > kLanes && n / chunk < k) chunk /= 2;
    if (n / chunk < k) return *std::max_element(row, row + n);
    const std::size_t chunks = n / chunk;
    scratch.resize(chunks);
    for (std::size_t c = 0; c < chunks; ++c) {
        V lane[kLanes];  // lane-wise minima, so that the loop vectorises
        for (std::size_t l = 0; l < kLanes; ++l) lane[l] = row[c * chunk + l];
        for (std::size_t j = kLanes; j < chunk; j += kLanes)
            for (std::size_t l = 0; l < kLanes; ++l) lane[l] = row[c * chunk + j + l] < lane[l] ? row[c * chunk + j + l] : lane[l];
        V m = lane[0];
        for (std::size_t l = 1; l < kLanes; ++l) m = lane[l] < m ? lane[l] : m;
        scratch[c] = m;
    }
    std::nth_element(scratch.begin(), scratch.begin() + static_cast<std::ptrdiff_t>(k - 1), scratch.end());
    return scratch[k - 1];
}

// The k smallest (value, index) of a whole row, n >= k: out[0, k) in rank order
// (out is left n long, so that its memory is reused from row to row). Faster than
// streaming the row through a TopK when the row is at hand: one branch-free pass
// keeps the values at or below chunk_threshold, a short list to select from.
template <class V>
void smallest_k(const V* row, std::size_t n, std::size_t k, std::vector<V>& scratch, std::vector<Ranked<V>>& out) {
    const V threshold = chunk_threshold(row, n, k, scratch);
    out.resize(n);  // a no-op once the caller's buffer has grown to n
    std::size_t kept = 0;
    for (std::size_t j = 0; j < n; ++j) {  // without a branch: each value is written, kept or not
        out[kept] = {row[j], static_cast<std::int64_t>(j)};
        kept += row[j] <= threshold;
    }
    if (kept > k)
        std::nth_element(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k - 1),
                         out.begin() + static_cast<std::ptrdiff_t>(kept), RanksBefore{});
    std::sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(k), RanksBefore{});
}

// Per query, the best k of every worker's TopK (workers[w].best[i]) merged into
// indices/scores (Q x k); values were pushed negated, so scores are negated back.
template <class Workers>
void write_merged_best(const Workers& workers, std::size_t nq, std::size_t k, std::int64_t* indices, float* scores) {
    std::vector<Ranked<float>> merged;
    for (std::size_t i = 0; i < nq; ++i) {
        merged.clear();
        for (const auto& w : workers) merged.insert(merged.end(), w.best[i].candidates().begin(), w.best[i].candidates().end());
        TopK<float>::select_best(merged, k);
        for (std::size_t j = 0; j < k; ++j) {
            indices[i * k + j] = merged[j].index;
            scores[i * k + j] = -merged[j].value;
        }
    }
}

}  // namespace rerank
