// Compact kernel bodies shared by every instruction-set variant.
//
// Included once per variant by compact_kernels_<isa>.cpp, which first defines
//   RERANK_ISA_NS     a namespace of its own (no inline function is merged across variants),
//   RERANK_ISA_NAME   the variant's name,
//   RERANK_VEC_BYTES  bytes per float32 vector register.
// A vector of float16 or int8 values is widened with one vcvtph2ps (F16C) or vpmovsxbd +
// vcvtdq2ps (written as intrinsics: GCC 12 converts such vector types element by element);
// the baseline widens value by value. Two gallery rows
// and up to four queries share a micro-tile so that several independent sums are in flight;
// every score is summed in the same order wherever its row sits, so equal rows score equal.
#include <cstddef>
#include <cstdint>

#if RERANK_VEC_BYTES > 16
#include <immintrin.h>
#endif

#include "compact_kernels.hpp"

namespace rerank::RERANK_ISA_NS {
namespace {

constexpr std::size_t kW = RERANK_VEC_BYTES / sizeof(float);  // values per vector
typedef float VecF __attribute__((vector_size(RERANK_VEC_BYTES)));
constexpr std::size_t kQB = 4;  // queries per micro-tile
constexpr std::size_t kGB = 2;  // gallery rows per micro-tile

inline float widen_one(std::uint16_t bits) {
    _Float16 h;
    __builtin_memcpy(&h, &bits, sizeof h);
    return static_cast<float>(h);
}

inline float widen_one(std::int8_t v) { return static_cast<float>(v); }

#if RERANK_VEC_BYTES == 32
inline VecF widen(const std::uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline VecF widen(const std::int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
#else
template <class T>
inline VecF widen(const T* p) {
    VecF v;
    for (std::size_t w = 0; w < kW; ++w) v[w] = widen_one(p[w]);
    return v;
}
#endif

inline VecF load(const float* p) {
    VecF v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

template <std::size_t QB, class T>
void strip(const float* const* q, const T* g, const float* scale, std::size_t ng, std::size_t d, float* out,
           std::size_t ld) {
    const std::size_t full = d - d % kW;
    for (std::size_t c0 = 0; c0 < ng; c0 += kGB) {
        const T* row[kGB];
        for (std::size_t c = 0; c < kGB; ++c) row[c] = g + (c0 + c < ng ? c0 + c : ng - 1) * d;
        VecF acc[kGB][QB] = {};
        for (std::size_t t = 0; t < full; t += kW) {
            VecF x[kGB];
            for (std::size_t c = 0; c < kGB; ++c) x[c] = widen(row[c] + t);
            for (std::size_t r = 0; r < QB; ++r) {
                const VecF qv = load(q[r] + t);
                for (std::size_t c = 0; c < kGB; ++c) acc[c][r] += x[c] * qv;
            }
        }
        for (std::size_t c = 0; c < kGB && c0 + c < ng; ++c)
            for (std::size_t r = 0; r < QB; ++r) {
                float s = 0.0f;
                for (std::size_t w = 0; w < kW; ++w) s += acc[c][r][w];
                for (std::size_t t = full; t < d; ++t) s += widen_one(row[c][t]) * q[r][t];
                out[r * ld + c0 + c] = s * scale[c0 + c];
            }
    }
}

template <class T>
void dot(const float* q, std::size_t nq, const T* g, const float* scale, std::size_t ng, std::size_t d, float* out,
         std::size_t ld) {
    std::size_t r0 = 0;
    for (; r0 + kQB <= nq; r0 += kQB) {
        const float* qr[kQB];
        for (std::size_t r = 0; r < kQB; ++r) qr[r] = q + (r0 + r) * d;
        strip<kQB>(qr, g, scale, ng, d, out + r0 * ld, ld);
    }
    for (; r0 < nq; ++r0) {
        const float* qr[1] = {q + r0 * d};
        strip<1>(qr, g, scale, ng, d, out + r0 * ld, ld);
    }
}

}  // namespace

extern const CompactKernels compact_table{RERANK_ISA_NAME, dot<std::uint16_t>, dot<std::int8_t>};

}  // namespace rerank::RERANK_ISA_NS
