// Memory stays O(N * (d + k) + Q * N), never N * N: distance rows are computed a block
// at a time, reduced to their row maximum and their nearest neighbours (a partial
// selection, not a sort), and only the query rows are kept whole. The encoding vectors V are
// sparse (a row has at most a few times k1 non-zeros), so they are stored as
// sorted (column, weight) lists and the Jaccard step walks an inverted index.
#include "k_reciprocal.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "parallel.hpp"
#include "topk.hpp"

namespace rerank {
namespace {

constexpr std::size_t kRowsPerTask = 16;

// Four floats at a time, on whatever vector unit the baseline flags allow.
typedef float Vec __attribute__((vector_size(16)));
typedef std::int32_t Mask __attribute__((vector_size(16)));
constexpr std::size_t kVecLanes = sizeof(Vec) / sizeof(float);

Vec load(const float* p) {
    Vec v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

Vec splat(float x) { return Vec{} + x; }

// Whether any lane is set: two 64-bit halves, cheaper than four lane extractions.
bool any(Mask m) {
    std::uint64_t half[2];
    std::memcpy(half, &m, sizeof half);
    return (half[0] | half[1]) != 0;
}

struct SparseRow {
    std::vector<std::int32_t> cols;  // increasing
    std::vector<double> vals;        // all > 0
};

// Largest of n >= 1 non-negative values; independent lane maxima so that the loop vectorises.
template <class T>
T row_maximum(const T* row, std::size_t n) {
    constexpr std::size_t kLanes = 16;
    T lane[kLanes] = {};
    std::size_t j = 0;
    for (; j + kLanes <= n; j += kLanes)
        for (std::size_t l = 0; l < kLanes; ++l) lane[l] = row[j + l] > lane[l] ? row[j + l] : lane[l];
    T mx = 0;
    for (; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
    for (T v : lane) mx = v > mx ? v : mx;
    return mx;
}

// x as a float, rounded up (towards > 0) or down (towards < 0) when it is not exact.
float widen(double x, float towards) {
    const float f = static_cast<float>(x);
    return (towards > 0 ? double(f) < x : double(f) > x) ? std::nextafter(f, towards * HUGE_VALF) : f;
}

// numpy.around(k1 / 2): halves round to the even neighbour.
std::size_t half_to_even(std::size_t k1) {
    const std::size_t h = k1 / 2;
    return (k1 % 2 == 1 && h % 2 == 1) ? h + 1 : h;
}

class KReciprocal {
public:
    KReciprocal(const MatrixView& q, const MatrixView& g, std::size_t k1, std::size_t k2, long threads,
                const Kernels& kern)
        : nq_(q.rows), n_(q.rows + g.rows), d_(q.cols), threads_(threads), kern_(kern) {
        k1_ = std::min(k1 + 1, n_);
        half_ = std::min(half_to_even(k1) + 1, n_);
        qe_ = k2 == 1 ? 1 : std::min(k2, n_);
        kmax_ = std::max(k1_, qe_);
        xf_.resize(n_ * d_);
        std::copy(q.data, q.data + q.rows * d_, xf_.begin());
        std::copy(g.data, g.data + g.rows * d_, xf_.begin() + static_cast<std::ptrdiff_t>(q.rows * d_));
        x_.assign(xf_.begin(), xf_.end());
        sq_.resize(n_);
        for (std::size_t i = 0; i < n_; ++i) sq_[i] = kern_.dot_f64(x_.data() + i * d_, x_.data() + i * d_, d_);
    }

    void run(double lambda, float* out) {
        nearest_neighbours();
        half_sets();
        encode();
        if (qe_ > 1) expand_queries();
        jaccard(lambda, out);
    }

private:
    // Exact squared distance between points i and j, from the double copies.
    double exact_sqdist(std::size_t i, std::size_t j) const {
        if (i == j) return 0.0;
        const double dot = kern_.dot_f64(x_.data() + i * d_, x_.data() + j * d_, d_);
        return std::max(0.0, sq_[i] + sq_[j] - 2.0 * dot);
    }

    // Row maxima, the kmax_ nearest of every point, and the scaled query rows.
    //
    // Query rows are computed in double (they are returned). The other rows are computed
    // in float32, twice as fast, and then made exact: delta bounds the float32 error, so
    // the true kmax_ nearest are among the values within 2 delta of a float32 value with
    // kmax_ values at or below it, and the true maximum among those within 2 delta of the
    // float32 maximum; those few are recomputed in double and selected again. Ranks are
    // thus those of double distances.
    void nearest_neighbours() {
        row_max_.resize(n_);
        neighbours_.resize(n_ * kmax_);
        neighbour_sq_.resize(n_ * kmax_);
        scaled_queries_.resize(nq_ * n_);
        const double max_sq = *std::max_element(sq_.begin(), sq_.end());
        // Beyond this, float32 squares could overflow: every row is then computed in double.
        const std::size_t exact_rows = max_sq < 1e30 ? nq_ : n_;
        const double delta_per_sq = 4.0 * double(d_ + 4) * std::ldexp(1.0, -24);

        const std::size_t ld64 = padded<double>(n_), ld32 = padded<float>(n_);
        std::vector<double> panels64(ld64 * d_), sq64(ld64, 0.0);
        kern_.f64.pack(x_.data(), n_, d_, panels64.data());
        std::copy(sq_.begin(), sq_.end(), sq64.begin());
        std::vector<float> panels32, sq32;
        if (exact_rows < n_) {
            panels32.resize(ld32 * d_);
            kern_.f32.pack(xf_.data(), n_, d_, panels32.data());
            sq32.assign(ld32, 0.0f);
            std::copy(sq_.begin(), sq_.end(), sq32.begin());
        }

        const std::size_t exact_tasks = (exact_rows + kRowsPerTask - 1) / kRowsPerTask;
        const std::size_t tasks = exact_tasks + (n_ - exact_rows + kRowsPerTask - 1) / kRowsPerTask;
        const unsigned nthreads = resolve_threads(threads_, tasks, n_ * n_ * d_);
        struct Scratch {
            std::vector<double> rows64, chunk_min64;
            std::vector<float> rows32, chunk_min32;
            std::vector<Ranked<double>> best64;
            std::vector<Ranked<float>> low;  // candidates for the nearest
            std::vector<std::int32_t> high;  // and for the farthest
        };
        std::vector<Scratch> scratch(nthreads);
        parallel_for(tasks, nthreads, [&](std::size_t task, unsigned worker) {
            Scratch& s = scratch[worker];
            const bool exact = task < exact_tasks;
            const std::size_t i0 = exact ? task * kRowsPerTask : exact_rows + (task - exact_tasks) * kRowsPerTask;
            const std::size_t m = std::min(kRowsPerTask, (exact ? exact_rows : n_) - i0);
            if (exact) {
                s.rows64.resize(kRowsPerTask * ld64);
                kern_.f64.sqdist(x_.data() + i0 * d_, sq64.data() + i0, m, panels64.data(), sq64.data(), n_, d_,
                                 s.rows64.data(), ld64);
            } else {
                s.rows32.resize(kRowsPerTask * ld32);
                kern_.f32.sqdist(xf_.data() + i0 * d_, sq32.data() + i0, m, panels32.data(), sq32.data(), n_, d_,
                                 s.rows32.data(), ld32);
            }
            for (std::size_t r = 0; r < m; ++r) {
                const std::size_t i = i0 + r;
                double mx;
                if (exact) {
                    double* row = s.rows64.data() + r * ld64;
                    row[i] = 0.0;
                    mx = row_maximum(row, n_);
                    smallest_k(row, n_, kmax_, s.chunk_min64, s.best64);
                    if (i < nq_)
                        for (std::size_t j = 0; j < n_; ++j) scaled_queries_[i * n_ + j] = row[j] / mx;
                } else {
                    float* row = s.rows32.data() + r * ld32;
                    row[i] = 0.0f;
                    const double delta = delta_per_sq * (sq_[i] + max_sq);
                    // Bounds widened to the next float outwards, so that comparing in float loses nothing.
                    const float limit = widen(double(chunk_threshold(row, n_, kmax_, s.chunk_min32)) + 2.0 * delta, 1.0f);
                    const float floor = widen(double(row_maximum(row, n_)) - 2.0 * delta, -1.0f);
                    // Four at a time, as both bounds rarely pass; within a four that does, each value
                    // is written and kept or not without a branch. The buffers grow once, to n_ and more.
                    s.low.resize(n_ + kVecLanes);
                    s.high.resize(n_ + kVecLanes);
                    std::size_t lows = 0, highs = 0;
                    for (std::size_t j = 0; j < n_; j += kVecLanes) {
                        const Vec v = load(row + j);
                        if (!any((v <= splat(limit)) | (v >= splat(floor)))) continue;
                        for (std::size_t e = j; e < std::min(n_, j + kVecLanes); ++e) {
                            s.low[lows] = {row[e], static_cast<std::int64_t>(e)};
                            lows += row[e] <= limit;
                            s.high[highs] = static_cast<std::int32_t>(e);
                            highs += row[e] >= floor;
                        }
                    }
                    // limit only bounds the kmax_-th smallest from above: the exact one narrows the candidates.
                    const auto low_end = s.low.begin() + static_cast<std::ptrdiff_t>(lows);
                    std::nth_element(s.low.begin(), s.low.begin() + static_cast<std::ptrdiff_t>(kmax_ - 1), low_end,
                                     [](const Ranked<float>& a, const Ranked<float>& b) { return a.value < b.value; });
                    const float near = widen(double(s.low[kmax_ - 1].value) + 2.0 * delta, 1.0f);
                    s.best64.clear();
                    for (auto p = s.low.begin(); p != low_end; ++p)
                        if (p->value <= near) s.best64.push_back({exact_sqdist(i, static_cast<std::size_t>(p->index)), p->index});
                    TopK<double>::select_best(s.best64, kmax_);
                    mx = 0.0;
                    for (std::size_t e = 0; e < highs; ++e) mx = std::max(mx, exact_sqdist(i, static_cast<std::size_t>(s.high[e])));
                }
                if (!(mx > 0.0)) throw InvalidInput("all query and gallery rows are identical: distances cannot be scaled");
                row_max_[i] = mx;
                for (std::size_t p = 0; p < kmax_; ++p) {
                    neighbours_[i * kmax_ + p] = static_cast<std::int32_t>(s.best64[p].index);
                    neighbour_sq_[i * kmax_ + p] = s.best64[p].value;
                }
            }
        });
    }

    const std::int32_t* nearest(std::size_t i) const { return neighbours_.data() + i * kmax_; }

    // Sets out to the members of the first `count` (at most k1_) neighbours of i that have i among their own first `count`.
    void reciprocal(std::size_t i, std::size_t count, std::vector<std::int32_t>& out) const {
        out.clear();
        for (std::size_t p = 0; p < count; ++p)
            if (static_cast<std::size_t>(back_rank_[i * k1_ + p]) < count) out.push_back(nearest(i)[p]);
    }

    // back_rank_, and the reciprocal set over half_ of every point, computed once:
    // encode() consults the set of each member of a point's own set, so each is wanted
    // many times. Back ranks come from a reverse index (who has i among their first k1_,
    // and where): one pass per point, rather than a scan of each neighbour's own list.
    void half_sets() {
        std::vector<std::size_t> start(n_ + 1, 0);
        for (std::size_t p = 0; p < n_; ++p)
            for (std::size_t q = 0; q < k1_; ++q) ++start[static_cast<std::size_t>(nearest(p)[q]) + 1];
        for (std::size_t i = 0; i < n_; ++i) start[i + 1] += start[i];
        std::vector<std::pair<std::int32_t, std::int32_t>> holders(n_ * k1_);  // (p, q): nearest(p)[q] is the point
        std::vector<std::size_t> fill(start.begin(), start.end() - 1);
        for (std::size_t p = 0; p < n_; ++p)
            for (std::size_t q = 0; q < k1_; ++q)
                holders[fill[static_cast<std::size_t>(nearest(p)[q])]++] = {static_cast<std::int32_t>(p), static_cast<std::int32_t>(q)};

        back_rank_.resize(n_ * k1_);
        half_set_.resize(n_ * half_);
        half_count_.resize(n_);
        const std::size_t tasks = (n_ + kRowsPerTask - 1) / kRowsPerTask;
        struct Scratch {
            std::vector<std::int32_t> rank;  // per point: where the current point stands among its first k1_
            std::vector<std::int32_t> set;
        };
        std::vector<Scratch> scratch(resolve_threads(threads_, tasks, n_ * k1_ * 8));
        parallel_for(tasks, static_cast<unsigned>(scratch.size()), [&](std::size_t task, unsigned worker) {
            auto& [rank, set] = scratch[worker];
            rank.resize(n_, static_cast<std::int32_t>(k1_));
            for (std::size_t i = task * kRowsPerTask; i < std::min(n_, (task + 1) * kRowsPerTask); ++i) {
                for (std::size_t e = start[i]; e < start[i + 1]; ++e) rank[static_cast<std::size_t>(holders[e].first)] = holders[e].second;
                for (std::size_t p = 0; p < k1_; ++p) back_rank_[i * k1_ + p] = rank[static_cast<std::size_t>(nearest(i)[p])];
                for (std::size_t e = start[i]; e < start[i + 1]; ++e) rank[static_cast<std::size_t>(holders[e].first)] = static_cast<std::int32_t>(k1_);
                reciprocal(i, half_, set);
                half_count_[i] = set.size();
                std::copy(set.begin(), set.end(), half_set_.begin() + static_cast<std::ptrdiff_t>(i * half_));
            }
        });
    }

    // V: for each point, exp(-distance) weights over its expanded k-reciprocal set.
    void encode() {
        v_.assign(n_, SparseRow{});
        const std::size_t tasks = (n_ + kRowsPerTask - 1) / kRowsPerTask;
        const unsigned nthreads = resolve_threads(threads_, tasks, n_ * k1_ * k1_ * half_);
        constexpr char kInBase = 1, kInExpansion = 2;
        struct Scratch {
            std::vector<std::int32_t> base, expansion;
            std::vector<char> flags;         // per point: kInBase | kInExpansion, cleared after each row
            std::vector<std::uint32_t> slot;  // per point: 1 + its place among the row's nearest, or 0
        };
        std::vector<Scratch> scratch(nthreads);
        parallel_for(tasks, nthreads, [&](std::size_t task, unsigned worker) {
            auto& [base, expansion, flags, slot] = scratch[worker];
            flags.resize(n_, 0);
            slot.resize(n_, 0);
            auto add = [&](std::int32_t j) {
                if (!(flags[static_cast<std::size_t>(j)] & kInExpansion)) {
                    flags[static_cast<std::size_t>(j)] |= kInExpansion;
                    expansion.push_back(j);
                }
            };
            for (std::size_t i = task * kRowsPerTask; i < std::min(n_, (task + 1) * kRowsPerTask); ++i) {
                reciprocal(i, k1_, base);
                expansion.clear();
                for (std::int32_t j : base) {
                    flags[static_cast<std::size_t>(j)] |= kInBase;
                    add(j);
                }
                for (std::int32_t candidate : base) {
                    const auto c = static_cast<std::size_t>(candidate);
                    const std::int32_t* own = half_set_.data() + c * half_;
                    const std::size_t size = half_count_[c];
                    std::size_t shared = 0;
                    for (std::size_t e = 0; e < size; ++e) shared += (flags[static_cast<std::size_t>(own[e])] & kInBase) != 0;
                    if (double(shared) > 2.0 / 3.0 * double(size))
                        for (std::size_t e = 0; e < size; ++e) add(own[e]);
                }
                for (std::int32_t j : expansion) flags[static_cast<std::size_t>(j)] = 0;
                std::sort(expansion.begin(), expansion.end());
                SparseRow& row = v_[i];
                row.cols.assign(expansion.begin(), expansion.end());
                row.vals.resize(expansion.size());
                // Most members are among the row's nearest, whose distances are kept.
                for (std::size_t p = 0; p < kmax_; ++p) slot[static_cast<std::size_t>(nearest(i)[p])] = static_cast<std::uint32_t>(p + 1);
                auto distance = [&](std::size_t j) {
                    if (i < nq_) return scaled_queries_[i * n_ + j];
                    return (slot[j] ? neighbour_sq_[i * kmax_ + slot[j] - 1] : exact_sqdist(i, j)) / row_max_[i];
                };
                double total = 0.0;
                for (std::size_t p = 0; p < expansion.size(); ++p)
                    total += row.vals[p] = std::exp(-distance(static_cast<std::size_t>(expansion[p])));
                for (double& w : row.vals) w /= total;
                for (std::size_t p = 0; p < kmax_; ++p) slot[static_cast<std::size_t>(nearest(i)[p])] = 0;
            }
        });
    }

    // Local query expansion: each row of V becomes the mean of the rows of its qe_ nearest.
    void expand_queries() {
        std::vector<SparseRow> mean(n_);
        const std::size_t tasks = (n_ + kRowsPerTask - 1) / kRowsPerTask;
        const unsigned nthreads = resolve_threads(threads_, tasks, n_ * qe_ * k1_ * 4);
        std::vector<std::vector<double>> dense(nthreads, std::vector<double>(n_, 0.0));
        std::vector<std::vector<char>> seen(nthreads, std::vector<char>(n_, 0));
        parallel_for(tasks, nthreads, [&](std::size_t task, unsigned worker) {
            std::vector<double>& acc = dense[worker];
            std::vector<char>& mark = seen[worker];
            for (std::size_t i = task * kRowsPerTask; i < std::min(n_, (task + 1) * kRowsPerTask); ++i) {
                SparseRow& out = mean[i];
                for (std::size_t p = 0; p < qe_; ++p) {
                    const SparseRow& src = v_[static_cast<std::size_t>(nearest(i)[p])];
                    for (std::size_t e = 0; e < src.cols.size(); ++e) {
                        const auto c = static_cast<std::size_t>(src.cols[e]);
                        if (!mark[c]) {
                            mark[c] = 1;
                            out.cols.push_back(src.cols[e]);
                        }
                        acc[c] += src.vals[e];
                    }
                }
                std::sort(out.cols.begin(), out.cols.end());
                out.vals.resize(out.cols.size());
                for (std::size_t e = 0; e < out.cols.size(); ++e) {
                    const auto c = static_cast<std::size_t>(out.cols[e]);
                    out.vals[e] = acc[c] / double(qe_);
                    acc[c] = 0.0;
                    mark[c] = 0;
                }
            }
        });
        v_ = std::move(mean);
    }

    // Jaccard distance between each query's V row and every gallery row, blended with the distance.
    void jaccard(double lambda, float* out) {
        const std::size_t ng = n_ - nq_;
        // Inverted index of the gallery rows: for each column, the (gallery row, weight) pairs.
        std::vector<std::size_t> start(n_ + 1, 0);
        for (std::size_t r = nq_; r < n_; ++r)
            for (std::int32_t c : v_[r].cols) ++start[static_cast<std::size_t>(c) + 1];
        for (std::size_t c = 0; c < n_; ++c) start[c + 1] += start[c];
        std::vector<std::int32_t> rows(start[n_]);
        std::vector<double> vals(start[n_]);
        std::vector<std::size_t> fill(start.begin(), start.end() - 1);
        for (std::size_t r = nq_; r < n_; ++r)
            for (std::size_t e = 0; e < v_[r].cols.size(); ++e) {
                const std::size_t at = fill[static_cast<std::size_t>(v_[r].cols[e])]++;
                rows[at] = static_cast<std::int32_t>(r - nq_);
                vals[at] = v_[r].vals[e];
            }

        const unsigned nthreads = resolve_threads(threads_, nq_, nq_ * ng * 8);
        std::vector<std::vector<double>> overlap(nthreads, std::vector<double>(ng));
        parallel_for(nq_, nthreads, [&](std::size_t i, unsigned worker) {
            std::vector<double>& t = overlap[worker];
            std::fill(t.begin(), t.end(), 0.0);
            const SparseRow& vi = v_[i];
            for (std::size_t e = 0; e < vi.cols.size(); ++e) {
                const auto c = static_cast<std::size_t>(vi.cols[e]);
                for (std::size_t at = start[c]; at < start[c + 1]; ++at)
                    t[static_cast<std::size_t>(rows[at])] += std::min(vi.vals[e], vals[at]);
            }
            const double* dist = scaled_queries_.data() + i * n_ + nq_;
            for (std::size_t gj = 0; gj < ng; ++gj) {
                const double jac = 1.0 - t[gj] / (2.0 - t[gj]);
                out[i * ng + gj] = static_cast<float>((1.0 - lambda) * jac + lambda * dist[gj]);
            }
        });
    }

    std::size_t nq_, n_, d_;
    long threads_;
    const Kernels& kern_;
    std::size_t k1_ = 0, half_ = 0, qe_ = 0, kmax_ = 0;  // neighbour counts, already capped at n_
    std::vector<float> xf_;  // all points, queries first
    std::vector<double> x_, sq_, row_max_, scaled_queries_;  // x_: xf_ in double
    std::vector<std::int32_t> neighbours_;  // n_ x kmax_, nearest first
    std::vector<double> neighbour_sq_;      // their squared distances
    std::vector<std::int32_t> back_rank_;   // n_ x k1_: where i stands among the first k1_ of its p-th nearest, k1_ if not there
    std::vector<std::int32_t> half_set_;    // n_ x half_: reciprocal sets over half_, half_count_ long
    std::vector<std::size_t> half_count_;
    std::vector<SparseRow> v_;
};

}  // namespace

void k_reciprocal(const MatrixView& queries, const MatrixView& gallery, std::size_t k1, std::size_t k2,
                  double lambda, long threads, const Kernels& kern, float* out) {
    check_pair(queries, gallery);
    if (k1 == 0) throw InvalidInput("k1 must be at least 1");
    if (k2 == 0) throw InvalidInput("k2 must be at least 1");
    if (!(lambda >= 0.0 && lambda <= 1.0)) throw InvalidInput("lambda_value must be within [0, 1]");
    if (queries.rows + gallery.rows > static_cast<std::size_t>(INT32_MAX))
        throw InvalidInput("too many rows for k-reciprocal re-ranking: " + std::to_string(queries.rows + gallery.rows));
    check_finite(queries, "queries");
    check_finite(gallery, "gallery");
    KReciprocal(queries, gallery, k1, k2, threads, kern).run(lambda, out);
}

}  // namespace rerank
