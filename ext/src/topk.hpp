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

// The k smallest (value, index) of a whole row, in rank order, into out.
//
// Faster than streaming the row through a TopK when the row is at hand: the k-th
// smallest of the minima of chunks of 8 is a threshold with at least k values at or
// below it (one per chunk), and usually not many more, so one branch-friendly pass
// collects a short list to select from.
template <class V>
void smallest_k(const V* row, std::size_t n, std::size_t k, std::vector<V>& chunk_min, std::vector<Ranked<V>>& out) {
    constexpr std::size_t kChunk = 8;
    out.clear();
    const std::size_t chunks = n / kChunk;
    if (chunks < k) {
        for (std::size_t j = 0; j < n; ++j) out.push_back({row[j], static_cast<std::int64_t>(j)});
        TopK<V>::select_best(out, k);
        return;
    }
    chunk_min.resize(chunks);
    for (std::size_t c = 0; c < chunks; ++c) {
        V m = row[c * kChunk];
        for (std::size_t j = 1; j < kChunk; ++j) m = row[c * kChunk + j] < m ? row[c * kChunk + j] : m;
        chunk_min[c] = m;
    }
    std::nth_element(chunk_min.begin(), chunk_min.begin() + static_cast<std::ptrdiff_t>(k - 1), chunk_min.end());
    const V threshold = chunk_min[k - 1];
    for (std::size_t j = 0; j < n; ++j)
        if (row[j] <= threshold) out.push_back({row[j], static_cast<std::int64_t>(j)});
    TopK<V>::select_best(out, k);
}

}  // namespace rerank
