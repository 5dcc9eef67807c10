// Dense dot-product kernels, compiled once per instruction set and picked at run time.
//
// The wheel must run on any x86-64 machine, so the project is built without
// -march=native; instead the few loops that dominate the run time are compiled
// a second time for x86-64-v3 (AVX2 + FMA) and chosen with the CPU's own answer.
#pragma once

#include <cstddef>

namespace rerank {

struct Kernels {
    const char* name;
    // Width of the column panels written by pack_panels_f64.
    std::size_t panel;
    // out[r * ld + c] = q_r . g_c for nq rows of q and ng rows of g (both row-major, d columns).
    void (*dot_f32)(const float* q, std::size_t nq, const float* g, std::size_t ng, std::size_t d,
                    float* out, std::size_t ld);
    // out[r] = x_r . x_r for n rows.
    void (*sqnorm_f32)(const float* x, std::size_t n, std::size_t d, float* out);
    // a . b over d doubles.
    double (*dot_f64)(const double* a, const double* b, std::size_t d);
    // Re-lays n rows of x (row-major, d columns) as ceil(n / panel) panels of d x panel values,
    // zero-padded, so that sqdist_f64 reads each panel contiguously.
    void (*pack_panels_f64)(const double* x, std::size_t n, std::size_t d, double* panels);
    // out[r * ld + j] = max(0, |a_r|^2 + |x_j|^2 - 2 a_r . x_j) for nrows rows a (row-major)
    // against the n packed points x; padded columns up to a whole panel are written too,
    // so ld must be at least n rounded up to the panel width.
    void (*sqdist_f64)(const double* a, const double* a_sq, std::size_t nrows, const double* panels,
                       const double* x_sq, std::size_t n, std::size_t d, double* out, std::size_t ld);
};

// The fastest kernels this CPU can run.
const Kernels& kernels();

// Kernels by name ("baseline", "x86-64-v3"); nullptr when unknown or not runnable here.
const Kernels* kernels_named(const char* name);

}  // namespace rerank
