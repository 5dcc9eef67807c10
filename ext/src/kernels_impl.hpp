// Kernel bodies shared by every instruction-set variant.
//
// Included once per variant by kernels_<isa>.cpp, which first defines
//   RERANK_ISA_NS  a namespace of its own (so no symbol is merged across variants:
//                  an AVX2 copy of an inline function must never serve the baseline),
//   RERANK_VEC_BYTES  bytes per vector register,
//   RERANK_ROWS       rows per micro-tile of sqdist_panels.
// Micro-tiles use GCC/Clang vector types, which the compiler maps onto whatever the
// variant's flags allow (two SSE2 registers for one 32-byte vector, one AVX2 register),
// and keeps their accumulators in registers. Every dot product is summed
// in the same order whatever its position in a tile, so equal rows give equal
// scores bit for bit (ties are then broken by index, as the API promises).
#include <cstddef>

#include "kernels.hpp"

namespace rerank::RERANK_ISA_NS {
namespace {

constexpr std::size_t kVecBytes = RERANK_VEC_BYTES;
typedef float VecF __attribute__((vector_size(kVecBytes)));
typedef double VecD __attribute__((vector_size(kVecBytes)));
constexpr std::size_t kW = kVecBytes / sizeof(float);  // floats per vector
constexpr std::size_t kQB = 4;            // queries per micro-tile of dot_f32
constexpr std::size_t kGB = 3;            // gallery rows per micro-tile of dot_f32
constexpr std::size_t kRB = RERANK_ROWS;  // rows per micro-tile of sqdist_panels

template <class Vec, class T>
inline Vec load(const T* p) {
    Vec v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

inline std::size_t clamp_row(std::size_t i, std::size_t n) { return i < n ? i : n - 1; }

// One horizontal strip of dot_f32: qb query rows against all ng gallery rows.
template <std::size_t QB>
void dot_strip(const float* const* qr, const float* g, std::size_t ng, std::size_t d, float* out, std::size_t ld) {
    const std::size_t full = d - d % kW;
    for (std::size_t c0 = 0; c0 < ng; c0 += kGB) {
        // Rows past the end repeat the last row; their results are dropped.
        const float* gr[kGB];
        for (std::size_t c = 0; c < kGB; ++c) gr[c] = g + clamp_row(c0 + c, ng) * d;
        VecF acc[QB][kGB] = {};
        for (std::size_t t = 0; t < full; t += kW) {
            VecF gv[kGB];
            for (std::size_t c = 0; c < kGB; ++c) gv[c] = load<VecF>(gr[c] + t);
            for (std::size_t r = 0; r < QB; ++r) {
                const VecF qv = load<VecF>(qr[r] + t);
                for (std::size_t c = 0; c < kGB; ++c) acc[r][c] += qv * gv[c];
            }
        }
        for (std::size_t r = 0; r < QB; ++r)
            for (std::size_t c = 0; c < kGB && c0 + c < ng; ++c) {
                float s = 0.0f;
                for (std::size_t w = 0; w < kW; ++w) s += acc[r][c][w];
                for (std::size_t t = full; t < d; ++t) s += qr[r][t] * gr[c][t];
                out[r * ld + c0 + c] = s;
            }
    }
}

// Strips of kQB queries, then narrower ones for the rest: a lone query costs one row of work.
// Each (query, gallery row) pair is summed the same way whatever the strip width.
void dot_f32(const float* q, std::size_t nq, const float* g, std::size_t ng, std::size_t d, float* out,
             std::size_t ld) {
    std::size_t r0 = 0;
    const float* qr[kQB];
    auto rows = [&](std::size_t count) {
        for (std::size_t r = 0; r < count; ++r) qr[r] = q + (r0 + r) * d;
    };
    for (; r0 + kQB <= nq; r0 += kQB) {
        rows(kQB);
        dot_strip<kQB>(qr, g, ng, d, out + r0 * ld, ld);
    }
    for (; r0 + 2 <= nq; r0 += 2) {
        rows(2);
        dot_strip<2>(qr, g, ng, d, out + r0 * ld, ld);
    }
    if (r0 < nq) {
        rows(1);
        dot_strip<1>(qr, g, ng, d, out + r0 * ld, ld);
    }
}

void sqnorm_f32(const float* x, std::size_t n, std::size_t d, float* out) {
    const std::size_t full = d - d % kW;
    for (std::size_t i = 0; i < n; ++i) {
        const float* row = x + i * d;
        VecF acc = {};
        for (std::size_t t = 0; t < full; t += kW) {
            const VecF v = load<VecF>(row + t);
            acc += v * v;
        }
        float s = 0.0f;
        for (std::size_t w = 0; w < kW; ++w) s += acc[w];
        for (std::size_t t = full; t < d; ++t) s += row[t] * row[t];
        out[i] = s;
    }
}

double dot_f64(const double* a, const double* b, std::size_t d) {
    constexpr std::size_t kDW = kVecBytes / sizeof(double);
    constexpr std::size_t kLanes = 4;  // independent sums, to hide the add latency
    const std::size_t full = d - d % (kDW * kLanes);
    VecD acc[kLanes] = {};
    for (std::size_t t = 0; t < full; t += kDW * kLanes)
        for (std::size_t l = 0; l < kLanes; ++l) acc[l] += load<VecD>(a + t + l * kDW) * load<VecD>(b + t + l * kDW);
    double s = 0.0;
    for (std::size_t l = 0; l < kLanes; ++l)
        for (std::size_t w = 0; w < kDW; ++w) s += acc[l][w];
    for (std::size_t t = full; t < d; ++t) s += a[t] * b[t];
    return s;
}

template <class T>
void pack_panels(const T* x, std::size_t n, std::size_t d, T* panels) {
    constexpr std::size_t kPanel = panel_width<T>();
    for (std::size_t p0 = 0; p0 < n; p0 += kPanel) {
        T* panel = panels + (p0 / kPanel) * d * kPanel;
        for (std::size_t t = 0; t < d; ++t)
            for (std::size_t c = 0; c < kPanel; ++c) panel[t * kPanel + c] = p0 + c < n ? x[(p0 + c) * d + t] : T(0);
    }
}

template <class T>
void sqdist_panels(const T* a, const T* a_sq, std::size_t nrows, const T* panels, const T* x_sq, std::size_t n,
                   std::size_t d, T* out, std::size_t ld) {
    typedef T Vec __attribute__((vector_size(kVecBytes)));
    constexpr std::size_t kPanel = panel_width<T>();
    constexpr std::size_t kLanes = kVecBytes / sizeof(T);
    constexpr std::size_t kPV = kPanel / kLanes;  // vectors per panel row
    for (std::size_t p0 = 0; p0 < n; p0 += kPanel) {
        const T* panel = panels + (p0 / kPanel) * d * kPanel;
        for (std::size_t r0 = 0; r0 < nrows; r0 += kRB) {
            const T* ar[kRB];
            for (std::size_t r = 0; r < kRB; ++r) ar[r] = a + clamp_row(r0 + r, nrows) * d;
            Vec acc[kRB][kPV] = {};
            for (std::size_t t = 0; t < d; ++t) {
                Vec col[kPV];
                for (std::size_t v = 0; v < kPV; ++v) col[v] = load<Vec>(panel + t * kPanel + v * kLanes);
                for (std::size_t r = 0; r < kRB; ++r) {
                    const Vec s = Vec{} + ar[r][t];
                    for (std::size_t v = 0; v < kPV; ++v) acc[r][v] += s * col[v];
                }
            }
            for (std::size_t r = 0; r < kRB && r0 + r < nrows; ++r)
                for (std::size_t v = 0; v < kPV; ++v) {
                    Vec sq = a_sq[r0 + r] + load<Vec>(x_sq + p0 + v * kLanes) - T(2) * acc[r][v];
                    sq = sq > T(0) ? sq : Vec{};
                    __builtin_memcpy(out + (r0 + r) * ld + p0 + v * kLanes, &sq, sizeof sq);
                }
        }
    }
}

}  // namespace

extern const Kernels table{RERANK_ISA_NAME,
                           dot_f32,
                           sqnorm_f32,
                           dot_f64,
                           {pack_panels<float>, sqdist_panels<float>},
                           {pack_panels<double>, sqdist_panels<double>}};

}  // namespace rerank::RERANK_ISA_NS
