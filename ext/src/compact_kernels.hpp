// Dot products of float32 queries with compact gallery rows (float16 or int8), compiled once per
// instruction set and picked at run time, like kernels.hpp.
//
// Each stored value is widened to float32 in a register and multiplied there, so a score is float32
// arithmetic on exactly the stored values: no shortlist or second pass is needed to make it exact, and
// the rows are read at 2 or 1 bytes a value instead of 4, which is what bounds a scan of a large gallery.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rerank {

struct CompactKernels {
    const char* name;
    // out[r * ld + c] = (q_r . g_c) * scale[c] for nq rows of q (float32) and ng rows of g (float16 bits), d columns.
    void (*dot_f16)(const float* q, std::size_t nq, const std::uint16_t* g, const float* scale, std::size_t ng,
                    std::size_t d, float* out, std::size_t ld);
    // The same over int8 rows.
    void (*dot_i8)(const float* q, std::size_t nq, const std::int8_t* g, const float* scale, std::size_t ng,
                   std::size_t d, float* out, std::size_t ld);
};

// The fastest compact kernels this CPU can run.
const CompactKernels& compact_kernels();

// By name ("baseline", "x86-64-v3"); nullptr when unknown or not runnable here.
const CompactKernels* compact_kernels_named(const char* name);

}  // namespace rerank
