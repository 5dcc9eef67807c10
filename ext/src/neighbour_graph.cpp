// One query against the graph works on the neighbourhoods it touches only. Every point's
// encoding V is built from neighbour lists, and those of the joint set (gallery + query)
// are the graph's lists with the query inserted where it belongs: the query displaces a
// row's last neighbour, changes which sets are reciprocal and may raise the row's maximum,
// all seen exactly because the joint lists are read, never the graph's alone. A column c
// can only be in V_y when y is among the k1 + 1 nearest of c or of one of c's round(k1/2) + 1
// nearest (reciprocity makes the lists symmetric enough), so the points whose V can meet the
// query's support are found from the support outwards, and the rows averaging one of them
// into their expanded V through the reverse lists (who keeps a point among their nearest);
// every other row has Jaccard distance 1, as in the dense computation.
#include "neighbour_graph.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <deque>
#include <string>

#include "parallel.hpp"
#include "topk.hpp"

namespace rerank {
namespace {

using Entry = NeighbourGraph::Entry;

constexpr std::size_t kRowsPerTask = 16;      // rows per task of the bulk build
constexpr std::size_t kQueryRowsPerTask = 4096;  // gallery rows per task of a query's distances
constexpr std::size_t kMaxK1 = 4096;          // bounds the memory per row (and what a setting may ask)

typedef float F4 __attribute__((vector_size(16)));
typedef double D4 __attribute__((vector_size(32)));

// a . b of float rows, summed in double: every product is exact, so the result is that of double copies.
double dot_wide(const float* a, const float* b, std::size_t d) {
    D4 acc0 = {}, acc1 = {};
    std::size_t t = 0;
    for (; t + 8 <= d; t += 8) {
        F4 a0, a1, b0, b1;
        std::memcpy(&a0, a + t, sizeof a0);
        std::memcpy(&a1, a + t + 4, sizeof a1);
        std::memcpy(&b0, b + t, sizeof b0);
        std::memcpy(&b1, b + t + 4, sizeof b1);
        acc0 += __builtin_convertvector(a0, D4) * __builtin_convertvector(b0, D4);
        acc1 += __builtin_convertvector(a1, D4) * __builtin_convertvector(b1, D4);
    }
    const D4 acc = acc0 + acc1;
    double s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (; t < d; ++t) s += double(a[t]) * b[t];
    return s;
}

double sqdist(const float* a, double a_sq, const float* b, double b_sq, std::size_t d) {
    return std::max(0.0, a_sq + b_sq - 2.0 * dot_wide(a, b, d));
}

// Nearer first; equal distances by the lower row, as a stable argsort ranks them.
bool nearer(const Entry& a, const Entry& b) { return a.sq < b.sq || (a.sq == b.sq && a.row < b.row); }
bool farther(const Entry& a, const Entry& b) { return a.sq > b.sq || (a.sq == b.sq && a.row < b.row); }

// The best k of items by `better` into out, in order; items is reordered.
template <class Better>
std::size_t keep_best(std::vector<Entry>& items, std::size_t k, Better better, Entry* out) {
    k = std::min(k, items.size());
    std::partial_sort(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(k), items.end(), better);
    std::copy(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(k), out);
    return k;
}

struct Inserted {
    bool inserted;
    std::int32_t dropped;  // the row that fell off the end, or -1
};

// Inserts e into the sorted list (count long, at most cap) when it belongs to the kept prefix:
// `complete` says the list already holds every row it could, so anything new belongs.
template <class Better>
Inserted insert_sorted(Entry* list, std::uint32_t& count, std::size_t cap, const Entry& e, bool complete,
                       Better better) {
    if (!complete && (count == 0 || !better(e, list[count - 1]))) return {false, -1};
    std::size_t at = count;
    while (at > 0 && better(e, list[at - 1])) --at;
    if (at >= cap) return {false, -1};
    const std::int32_t dropped = count == cap ? list[cap - 1].row : -1;
    const std::size_t end = std::min<std::size_t>(count, cap - 1);
    for (std::size_t p = end; p > at; --p) list[p] = list[p - 1];
    list[at] = e;
    count = static_cast<std::uint32_t>(end + 1);
    return {true, dropped};
}

// Drops the entries of row `gone` and renames row `from` as `to` (the last row moved into the hole).
void drop_and_rename(Entry* list, std::uint32_t& count, std::int32_t gone, std::int32_t from, std::int32_t to) {
    std::uint32_t kept = 0;
    for (std::uint32_t p = 0; p < count; ++p) {
        if (list[p].row == gone) continue;
        list[kept] = list[p];
        if (list[kept].row == from) list[kept].row = to;
        ++kept;
    }
    count = kept;
}

// The k-th largest of row[0, n), k <= kFar: one pass that rarely does more than compare with the kept k-th.
float kth_largest(const float* row, std::size_t n, std::size_t k) {
    float top[NeighbourGraph::kFar];  // descending
    std::size_t kept = 0;
    for (std::size_t j = 0; j < n; ++j) {
        const float v = row[j];
        if (kept == k && !(v > top[k - 1])) continue;
        std::size_t at = kept < k ? kept++ : k - 1;
        for (; at > 0 && top[at - 1] < v; --at) top[at] = top[at - 1];
        top[at] = v;
    }
    return top[k - 1];
}

// numpy.around(k1 / 2): the current rounding mode rounds halves to even.
std::size_t half_of(std::size_t k1) { return static_cast<std::size_t>(std::nearbyint(double(k1) / 2.0)); }

}  // namespace

NeighbourGraph::NeighbourGraph(std::size_t k1_max, std::size_t margin) : depth_(k1_max + 1) {
    if (k1_max == 0) throw InvalidInput("k1_max must be at least 1");
    auto bound = [](const char* name, std::size_t value) {
        if (value > kMaxK1)
            throw InvalidInput(std::string(name) + " must be at most " + std::to_string(kMaxK1) + ", got " +
                               std::to_string(value));
    };
    bound("k1_max", k1_max);
    bound("margin", margin);
    capacity_ = depth_ + margin;
}

void NeighbourGraph::check_gallery(const MatrixView& gallery, std::size_t rows) const {
    if (gallery.cols != dim_)
        throw InvalidInput("gallery has " + std::to_string(gallery.cols) + " columns, the neighbour graph " +
                           std::to_string(dim_));
    if (gallery.rows != rows)
        throw InvalidInput("gallery has " + std::to_string(gallery.rows) + " rows where the neighbour graph expects " +
                           std::to_string(rows));
}

void NeighbourGraph::check_row(std::size_t row, std::size_t end) const {
    if (row >= end)
        throw InvalidInput("row " + std::to_string(row) + " is beyond the graph's " + std::to_string(rows_) + " rows");
}

void NeighbourGraph::distances_from(const MatrixView& gallery, std::size_t row, std::vector<double>& dist) const {
    dist.resize(rows_);
    for (std::size_t j = 0; j < rows_; ++j)
        dist[j] = j == row ? 0.0 : sqdist(gallery.row(row), sq_norm_[row], gallery.row(j), sq_norm_[j], dim_);
}

void NeighbourGraph::fill_row(std::size_t row, const double* dist, std::size_t n) {
    std::vector<Entry> all(n);
    for (std::size_t j = 0; j < n; ++j) all[j] = {j == row ? 0.0 : dist[j], static_cast<std::int32_t>(j)};
    near_count_[row] = static_cast<std::uint32_t>(keep_best(all, capacity_, nearer, near(row)));
    far_count_[row] = static_cast<std::uint32_t>(keep_best(all, kFar, farther, far(row)));
}

void NeighbourGraph::refill_row(std::size_t row, const double* dist) {
    const auto id = static_cast<std::int32_t>(row);
    for (std::uint32_t p = 0; p < near_count_[row]; ++p) unhold(near(row)[p].row, id);
    fill_row(row, dist, rows_);
    for (std::uint32_t p = 0; p < near_count_[row]; ++p) hold(near(row)[p].row, id);
}

void NeighbourGraph::unhold(std::int32_t row, std::int32_t holder) {
    auto& list = holders_[static_cast<std::size_t>(row)];
    const auto at = std::find(list.begin(), list.end(), holder);
    if (at == list.end()) return;
    *at = list.back();
    list.pop_back();
}

void NeighbourGraph::build(const MatrixView& gallery, long threads, const Kernels& kern) {
    if (gallery.cols == 0) throw InvalidInput("embeddings have zero dimensions");
    if (gallery.rows > static_cast<std::size_t>(INT32_MAX))
        throw InvalidInput("too many rows for a neighbour graph: " + std::to_string(gallery.rows));
    check_finite(gallery, "gallery");
    const std::size_t n = gallery.rows, d = gallery.cols;
    built_ = false;
    rows_ = n;
    dim_ = d;
    sq_norm_.resize(n);
    for (std::size_t i = 0; i < n; ++i) sq_norm_[i] = dot_wide(gallery.row(i), gallery.row(i), d);
    near_.assign(n * capacity_, Entry{});
    far_.assign(n * kFar, Entry{});
    near_count_.assign(n, 0);
    far_count_.assign(n, 0);
    holders_.assign(n, {});
    if (n == 0) {
        built_ = true;
        return;
    }
    const double max_sq = *std::max_element(sq_norm_.begin(), sq_norm_.end());
    if (!(max_sq < 1e30)) {  // float32 squares could overflow: every distance in double
        const unsigned nthreads = resolve_threads(threads, n, n * n * d);
        std::vector<std::vector<double>> dist(nthreads);
        parallel_for(n, nthreads, [&](std::size_t i, unsigned worker) {
            distances_from(gallery, i, dist[worker]);
            fill_row(i, dist[worker].data(), n);
        });
    } else {
        build_float32(gallery, threads, max_sq, kern);
    }
    for (std::size_t i = 0; i < n; ++i)
        for (std::uint32_t p = 0; p < near_count_[i]; ++p) hold(near(i)[p].row, static_cast<std::int32_t>(i));
    built_ = true;
}

void NeighbourGraph::build_float32(const MatrixView& gallery, long threads, double max_sq, const Kernels& kern) {
    const std::size_t n = gallery.rows, d = gallery.cols;
    const std::size_t tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
    const unsigned nthreads = resolve_threads(threads, tasks, n * n * d);
    // float32 distances bound the error by delta (as k_reciprocal.cpp's bound): the true nearest and
    // farthest are among the values within 2 delta of the float32 selection, recomputed exactly.
    const std::size_t ld = padded<float>(n);
    std::vector<float> panels(ld * d), sq32(ld, 0.0f);
    kern.f32.pack(gallery.data, n, d, panels.data());
    for (std::size_t i = 0; i < n; ++i) sq32[i] = static_cast<float>(sq_norm_[i]);
    const double delta_per_sq = 4.0 * double(d + 4) * std::ldexp(1.0, -24);
    const std::size_t keep_near = std::min(capacity_, n), keep_far = std::min(kFar, n);
    struct Scratch {
        std::vector<float> rows, chunk;
        std::vector<Ranked<float>> best;
        std::vector<Entry> near, far;
    };
    std::vector<Scratch> scratch(nthreads);
    parallel_for(tasks, nthreads, [&](std::size_t task, unsigned worker) {
        Scratch& s = scratch[worker];
        const std::size_t i0 = task * kRowsPerTask, m = std::min(kRowsPerTask, n - i0);
        s.rows.resize(kRowsPerTask * ld);
        kern.f32.sqdist(gallery.data + i0 * d, sq32.data() + i0, m, panels.data(), sq32.data(), n, d, s.rows.data(), ld);
        for (std::size_t r = 0; r < m; ++r) {
            const std::size_t i = i0 + r;
            float* row = s.rows.data() + r * ld;
            row[i] = 0.0f;
            const double delta2 = 2.0 * delta_per_sq * (sq_norm_[i] + max_sq);
            smallest_k(row, n, keep_near, s.chunk, s.best);
            const double limit = double(s.best[keep_near - 1].value) + delta2;
            const double floor = double(kth_largest(row, n, keep_far)) - delta2;
            s.near.clear();
            s.far.clear();
            for (std::size_t j = 0; j < n; ++j) {
                const double v = row[j];
                if (v > limit && v < floor) continue;
                const double exact = j == i ? 0.0 : sqdist(gallery.row(i), sq_norm_[i], gallery.row(j), sq_norm_[j], d);
                if (v <= limit) s.near.push_back({exact, static_cast<std::int32_t>(j)});
                if (v >= floor) s.far.push_back({exact, static_cast<std::int32_t>(j)});
            }
            near_count_[i] = static_cast<std::uint32_t>(keep_best(s.near, keep_near, nearer, near(i)));
            far_count_[i] = static_cast<std::uint32_t>(keep_best(s.far, keep_far, farther, far(i)));
        }
    });
}

void NeighbourGraph::offer(std::size_t j, double sq, std::int32_t row, std::size_t covered) {
    const Entry e{sq, row};
    const auto holder = static_cast<std::int32_t>(j);
    const Inserted change = insert_sorted(near(j), near_count_[j], capacity_, e, near_count_[j] == covered, nearer);
    if (change.inserted) hold(row, holder);
    if (change.dropped >= 0) unhold(change.dropped, holder);
    insert_sorted(far(j), far_count_[j], kFar, e, far_count_[j] == covered, farther);
}

void NeighbourGraph::upserted(const MatrixView& gallery, std::size_t row) {
    if (!built_) throw InvalidInput("the neighbour graph is not built");
    check_row(row, rows_ + 1);
    const bool appended = row == rows_;
    if (appended && rows_ == static_cast<std::size_t>(INT32_MAX)) throw InvalidInput("too many rows for a neighbour graph");
    check_gallery(gallery, appended ? rows_ + 1 : rows_);
    check_finite({gallery.row(row), 1, dim_}, "the new gallery row");
    const auto id = static_cast<std::int32_t>(row);
    if (appended) {
        ++rows_;
        sq_norm_.push_back(0.0);
        near_.resize(rows_ * capacity_);
        far_.resize(rows_ * kFar);
        near_count_.push_back(0);
        far_count_.push_back(0);
        holders_.emplace_back();
    } else {
        for (std::size_t j = 0; j < rows_; ++j) {
            if (j == row) continue;
            drop_and_rename(near(j), near_count_[j], id, -1, -1);
            drop_and_rename(far(j), far_count_[j], id, -1, -1);
        }
        // Every other holder let go of it; its own list still holds it until refilled below.
        auto& own = holders_[row];
        own.erase(std::remove_if(own.begin(), own.end(), [id](std::int32_t h) { return h != id; }), own.end());
    }
    const float* x = gallery.row(row);
    sq_norm_[row] = dot_wide(x, x, dim_);
    std::vector<double> dist;
    distances_from(gallery, row, dist);
    // Every other row's lists cover the rows but this one.
    for (std::size_t j = 0; j < rows_; ++j)
        if (j != row) offer(j, dist[j], id, rows_ - 1);
    refill_row(row, dist.data());
    if (!appended) refill_short_rows(gallery);
}

void NeighbourGraph::deleted(const MatrixView& gallery, std::size_t row) {
    if (!built_) throw InvalidInput("the neighbour graph is not built");
    check_row(row, rows_);
    check_gallery(gallery, rows_ - 1);
    const std::size_t last = rows_ - 1;
    const auto gone = static_cast<std::int32_t>(row), from = static_cast<std::int32_t>(last);
    for (std::uint32_t p = 0; p < near_count_[row]; ++p) unhold(near(row)[p].row, gone);
    for (std::size_t j = 0; j < rows_; ++j) {
        if (j == row) continue;
        drop_and_rename(near(j), near_count_[j], gone, from, gone);
        drop_and_rename(far(j), far_count_[j], gone, from, gone);
    }
    if (row != last) {
        // The last row's neighbours now name their holder `gone` (and an entry reading `gone` was `last`).
        for (std::uint32_t p = 0; p < near_count_[last]; ++p) {
            const std::int32_t target = near(last)[p].row == gone ? from : near(last)[p].row;
            auto& list = holders_[static_cast<std::size_t>(target)];
            std::replace(list.begin(), list.end(), from, gone);
        }
        std::copy(near(last), near(last) + capacity_, near(row));
        std::copy(far(last), far(last) + kFar, far(row));
        near_count_[row] = near_count_[last];
        far_count_[row] = far_count_[last];
        sq_norm_[row] = sq_norm_[last];
        holders_[row] = std::move(holders_[last]);
    }
    holders_.pop_back();
    rows_ = last;
    sq_norm_.resize(rows_);
    near_.resize(rows_ * capacity_);
    far_.resize(rows_ * kFar);
    near_count_.resize(rows_);
    far_count_.resize(rows_);
    refill_short_rows(gallery);
}

void NeighbourGraph::refill_short_rows(const MatrixView& gallery) {
    const std::size_t wanted = std::min(depth_, rows_);
    std::vector<double> dist;
    for (std::size_t j = 0; j < rows_; ++j) {
        if (near_count_[j] >= wanted && far_count_[j] > 0) continue;
        distances_from(gallery, j, dist);
        refill_row(j, dist.data());
    }
}

std::vector<std::int32_t> NeighbourGraph::holders(std::size_t row) const {
    check_row(row, rows_);
    return holders_[row];
}

std::vector<Entry> NeighbourGraph::nearest(std::size_t row) const {
    check_row(row, rows_);
    return {near(row), near(row) + near_count_[row]};
}

std::vector<Entry> NeighbourGraph::farthest(std::size_t row) const {
    check_row(row, rows_);
    return {far_.data() + row * kFar, far_.data() + row * kFar + far_count_[row]};
}

// One query's k-reciprocal distances over the graph. Points are the gallery rows 0..G-1 and the
// query, G; what a point's encoding needs is computed when first asked for and kept for the query.
class GraphQuery {
public:
    GraphQuery(const NeighbourGraph& graph, const float* query, const MatrixView& gallery, std::size_t k1,
               std::size_t k2, long threads)
        : g_(graph), q_(query), x_(gallery), rows_(gallery.rows), me_(static_cast<std::int32_t>(gallery.rows)) {
        const std::size_t n = rows_ + 1;
        k1p_ = std::min(k1 + 1, n);
        hp_ = std::min(half_of(k1) + 1, n);
        qe_ = k2 == 1 ? 1 : std::min(k2, n);
        lq_ = std::max(k1p_, qe_);
        distances(threads);
        slot_.assign(n, -1);
        in_base_.assign(n, 0);
        in_expansion_.assign(n, 0);
        listed_.assign(n, 0);
        reach_.assign(n, 0);
        qv_.assign(n, 0.0);
        acc_.assign(n, 0.0);
    }

    void run(double lambda, float* out) {
        // The query's expanded encoding, and its support.
        std::vector<std::int32_t> support;
        for (std::size_t r = 0; r < (qe_ == 1 ? 1 : qe_); ++r) {
            const Memo& v = encoding(qe_ == 1 ? me_ : joint(me_, r));
            for (std::size_t e = 0; e < v.cols.size(); ++e) {
                const auto c = static_cast<std::size_t>(v.cols[e]);
                if (qv_[c] == 0.0) support.push_back(v.cols[e]);
                qv_[c] += v.vals[e];
            }
        }
        if (qe_ > 1)
            for (std::int32_t c : support) qv_[static_cast<std::size_t>(c)] /= double(qe_);
        // Points whose V may hold a column of the support.
        constexpr char kReached = 1, kSpread = 2;
        std::vector<std::int32_t> reached;
        auto reach = [&](std::int32_t p) {
            char& mark = reach_[static_cast<std::size_t>(p)];
            if (!(mark & kReached)) reached.push_back(p);
            mark |= kReached;
        };
        for (std::int32_t c : support) {
            for (std::size_t r = 0; r < hp_; ++r) {
                const std::int32_t near = joint(c, r);
                if (reach_[static_cast<std::size_t>(near)] & kSpread) continue;
                reach_[static_cast<std::size_t>(near)] |= kSpread;
                for (std::size_t r2 = 0; r2 < k1p_; ++r2) reach(joint(near, r2));
            }
            for (std::size_t r = 0; r < k1p_; ++r) reach(joint(c, r));
        }
        // Rows with a reached point among their qe_ nearest: found through the reverse lists (holders).
        std::vector<std::int32_t> rows;
        auto consider = [&](std::int32_t g) {
            if (!listed_[static_cast<std::size_t>(g)]) rows.push_back(g);
            listed_[static_cast<std::size_t>(g)] = 1;
        };
        for (std::int32_t p : reached) {
            if (qe_ == 1) {
                if (p != me_) consider(p);
            } else if (p != me_) {
                for (std::int32_t g : g_.holders_[static_cast<std::size_t>(p)]) consider(g);
            } else {
                for (std::size_t g = 0; g < rows_; ++g)
                    if (static_cast<std::size_t>(pos_[g]) < qe_) consider(static_cast<std::int32_t>(g));
            }
        }
        for (std::size_t g = 0; g < rows_; ++g) out[g] = blend(lambda, 0.0, g);
        std::vector<std::int32_t> touched;
        for (std::int32_t row : rows) {
            bool hit = qe_ == 1;
            for (std::size_t r = 0; r < qe_ && !hit; ++r) hit = reach_[static_cast<std::size_t>(joint(row, r))] & kReached;
            if (!hit) continue;
            for (std::size_t r = 0; r < qe_; ++r) {
                const Memo& v = encoding(qe_ == 1 ? row : joint(row, r));
                for (std::size_t e = 0; e < v.cols.size(); ++e) {
                    const auto c = static_cast<std::size_t>(v.cols[e]);
                    if (qv_[c] == 0.0) continue;
                    if (acc_[c] == 0.0) touched.push_back(v.cols[e]);
                    acc_[c] += v.vals[e];
                }
            }
            double overlap = 0.0;
            for (std::int32_t c : touched) {
                const auto cc = static_cast<std::size_t>(c);
                overlap += std::min(qv_[cc], qe_ == 1 ? acc_[cc] : acc_[cc] / double(qe_));
                acc_[cc] = 0.0;
            }
            touched.clear();
            out[static_cast<std::size_t>(row)] = blend(lambda, overlap, static_cast<std::size_t>(row));
        }
    }

private:
    struct Memo {
        bool has_half = false, has_v = false;
        std::vector<std::int32_t> half;  // reciprocal set over hp_
        std::vector<std::int32_t> cols;  // V: increasing columns
        std::vector<double> vals;
    };

    // The final distance of row g, from the overlap of its expanded V with the query's.
    float blend(double lambda, double overlap, std::size_t g) const {
        const double jaccard = 1.0 - overlap / (2.0 - overlap);
        return static_cast<float>((1.0 - lambda) * jaccard + lambda * (dq_[g] / q_max_));
    }

    // Exact distances of the query to every row, where it enters each row's list, and its own list.
    void distances(long threads) {
        const std::size_t d = x_.cols;
        q_sq_ = dot_wide(q_, q_, d);
        dq_.resize(rows_);
        pos_.resize(rows_);
        const std::size_t tasks = (rows_ + kQueryRowsPerTask - 1) / kQueryRowsPerTask;
        parallel_for(tasks, resolve_threads(threads, tasks, rows_ * d), [&](std::size_t task, unsigned) {
            for (std::size_t j = task * kQueryRowsPerTask; j < std::min(rows_, (task + 1) * kQueryRowsPerTask); ++j) {
                const double dist = sqdist(q_, q_sq_, x_.row(j), g_.sq_norm_[j], d);
                dq_[j] = dist;
                // The query ranks before rows at its distance: its index is the lowest, as in the dense path.
                const Entry* list = g_.near(j);
                const std::size_t span = std::min<std::size_t>(g_.near_count_[j], lq_);
                std::size_t at = span;
                if (span > 0 && dist <= list[span - 1].sq)
                    at = static_cast<std::size_t>(
                        std::lower_bound(list, list + span, dist, [](const Entry& e, double v) { return e.sq < v; }) -
                        list);
                pos_[j] = static_cast<std::int32_t>(at);
            }
        });
        q_max_ = *std::max_element(dq_.begin(), dq_.end());
        if (!(q_max_ > 0.0)) throw InvalidInput("all query and gallery rows are identical: distances cannot be scaled");
        std::vector<double> scratch;
        std::vector<Ranked<double>> best;
        smallest_k(dq_.data(), rows_, lq_ - 1, scratch, best);
        qlist_.assign(1, me_);
        for (std::size_t p = 0; p + 1 < lq_; ++p) qlist_.push_back(static_cast<std::int32_t>(best[p].index));
    }

    // The r-th nearest of point p in the joint set (r below lq_).
    std::int32_t joint(std::int32_t p, std::size_t r) const {
        if (p == me_) return qlist_[r];
        const auto pos = static_cast<std::size_t>(pos_[static_cast<std::size_t>(p)]);
        if (r < pos) return g_.near(static_cast<std::size_t>(p))[r].row;
        if (r == pos) return me_;
        return g_.near(static_cast<std::size_t>(p))[r - 1].row;
    }

    // Whether c is among the first m of p.
    bool among(std::int32_t p, std::int32_t c, std::size_t m) const {
        if (p == me_) {
            const auto end = qlist_.begin() + static_cast<std::ptrdiff_t>(m);
            return std::find(qlist_.begin(), end, c) != end;
        }
        const auto pos = static_cast<std::size_t>(pos_[static_cast<std::size_t>(p)]);
        if (c == me_) return pos < m;
        const Entry* list = g_.near(static_cast<std::size_t>(p));
        const std::size_t span = std::min<std::size_t>(m, g_.near_count_[static_cast<std::size_t>(p)]);
        for (std::size_t r = 0; r < span; ++r)
            if (list[r].row == c) return r + (pos <= r ? 1 : 0) < m;
        return false;
    }

    void reciprocal(std::int32_t p, std::size_t m, std::vector<std::int32_t>& out) const {
        out.clear();
        for (std::size_t r = 0; r < m; ++r) {
            const std::int32_t c = joint(p, r);
            if (among(c, p, m)) out.push_back(c);
        }
    }

    double distance(std::int32_t p, std::int32_t c) const {
        if (p == c) return 0.0;
        if (p == me_) return dq_[static_cast<std::size_t>(c)];
        if (c == me_) return dq_[static_cast<std::size_t>(p)];
        const auto pp = static_cast<std::size_t>(p), cc = static_cast<std::size_t>(c);
        const Entry* list = g_.near(pp);
        for (std::size_t e = 0; e < g_.near_count_[pp]; ++e)
            if (list[e].row == c) return list[e].sq;
        return sqdist(x_.row(pp), g_.sq_norm_[pp], x_.row(cc), g_.sq_norm_[cc], x_.cols);
    }

    double row_max(std::int32_t p) const {
        if (p == me_) return q_max_;
        const auto pp = static_cast<std::size_t>(p);
        return std::max(g_.far_[pp * NeighbourGraph::kFar].sq, dq_[pp]);
    }

    Memo& memo(std::int32_t p) {
        std::int32_t& s = slot_[static_cast<std::size_t>(p)];
        if (s < 0) {
            s = static_cast<std::int32_t>(memos_.size());
            memos_.emplace_back();
        }
        return memos_[static_cast<std::size_t>(s)];
    }

    const std::vector<std::int32_t>& half_set(std::int32_t p) {
        Memo& m = memo(p);
        if (!m.has_half) {
            reciprocal(p, hp_, m.half);
            m.has_half = true;
        }
        return m.half;
    }

    // V of point p: exp(-distance) weights over its expanded k-reciprocal set, normalised.
    const Memo& encoding(std::int32_t p) {
        Memo& m = memo(p);
        if (m.has_v) return m;
        constexpr char kInBase = 1;
        reciprocal(p, k1p_, base_);
        expansion_.clear();
        auto add = [&](std::int32_t j) {
            if (!in_expansion_[static_cast<std::size_t>(j)]) {
                in_expansion_[static_cast<std::size_t>(j)] = 1;
                expansion_.push_back(j);
            }
        };
        for (std::int32_t j : base_) {
            in_base_[static_cast<std::size_t>(j)] = kInBase;
            add(j);
        }
        for (std::size_t b = 0; b < base_.size(); ++b) {
            const std::vector<std::int32_t>& own = half_set(base_[b]);
            std::size_t shared = 0;
            for (std::int32_t o : own) shared += in_base_[static_cast<std::size_t>(o)];
            if (double(shared) > 2.0 / 3.0 * double(own.size()))
                for (std::int32_t o : own) add(o);
        }
        for (std::int32_t j : base_) in_base_[static_cast<std::size_t>(j)] = 0;
        for (std::int32_t j : expansion_) in_expansion_[static_cast<std::size_t>(j)] = 0;
        std::sort(expansion_.begin(), expansion_.end());
        const double scale = row_max(p);
        m.cols.assign(expansion_.begin(), expansion_.end());
        m.vals.resize(expansion_.size());
        double total = 0.0;
        for (std::size_t e = 0; e < expansion_.size(); ++e)
            total += m.vals[e] = std::exp(-distance(p, expansion_[e]) / scale);
        for (double& w : m.vals) w /= total;
        m.has_v = true;
        return m;
    }

    const NeighbourGraph& g_;
    const float* q_;
    const MatrixView& x_;
    std::size_t rows_;
    std::int32_t me_;  // the query's point index
    std::size_t k1p_ = 0, hp_ = 0, qe_ = 0, lq_ = 0;  // list lengths, capped at the joint size
    double q_sq_ = 0.0, q_max_ = 0.0;
    std::vector<double> dq_;           // the query's squared distance to each row
    std::vector<std::int32_t> pos_;    // where the query stands in each row's list (lq_ or beyond: not there)
    std::vector<std::int32_t> qlist_;  // the query's lq_ nearest, itself first
    std::vector<std::int32_t> slot_;   // per point: its memo, or -1
    std::deque<Memo> memos_;           // a deque: a memo stays put while others are added
    std::vector<char> in_base_, in_expansion_, reach_, listed_;  // listed_: rows to compute the overlap of
    std::vector<double> qv_, acc_;     // the query's expanded V (dense); a row's, restricted to qv_'s support
    std::vector<std::int32_t> base_, expansion_;
};

void NeighbourGraph::k_reciprocal(const float* query, std::size_t dim, const MatrixView& gallery, std::size_t k1,
                                  std::size_t k2, double lambda, long threads, float* out) const {
    if (!built_) throw InvalidInput("the neighbour graph is not built");
    if (rows_ == 0) throw InvalidInput("gallery is empty: need at least one row");
    if (dim != dim_)
        throw InvalidInput("dimension mismatch: the query has " + std::to_string(dim) + " columns, the gallery " +
                           std::to_string(dim_));
    check_gallery(gallery, rows_);
    if (k1 == 0) throw InvalidInput("k1 must be at least 1");
    if (k2 == 0) throw InvalidInput("k2 must be at least 1");
    if (k1 > k1_max())
        throw InvalidInput("k1 = " + std::to_string(k1) + " is more than the neighbour graph holds (k1 up to " +
                           std::to_string(k1_max()) + ")");
    if (k2 > depth_)
        throw InvalidInput("k2 = " + std::to_string(k2) + " is more than the neighbour graph holds (k2 up to " +
                           std::to_string(depth_) + ")");
    if (!(lambda >= 0.0 && lambda <= 1.0)) throw InvalidInput("lambda_value must be within [0, 1]");
    check_finite({query, 1, dim}, "queries");
    GraphQuery(*this, query, gallery, k1, k2, threads).run(lambda, out);
}

}  // namespace rerank
