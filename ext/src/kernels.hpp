// Dense dot-product kernels, compiled once per instruction set and picked at run time.
//
// The wheel must run on any x86-64 machine, so the project is built without
// -march=native; instead the few loops that dominate the run time are compiled
// a second time for x86-64-v3 (AVX2 + FMA) and chosen with the CPU's own answer.
#pragma once

#include <cstddef>

namespace rerank {

// Packed panels: n points re-laid as ceil(n / panel) panels of d x panel values
// (panel = kPanelBytes / sizeof(value), zero-padded), so that the distance kernels
// read each panel contiguously and every column goes through the same arithmetic.
constexpr std::size_t kPanelBytes = 64;

template <class T>
constexpr std::size_t panel_width() { return kPanelBytes / sizeof(T); }

template <class T>
constexpr std::size_t padded(std::size_t n) { return (n + panel_width<T>() - 1) / panel_width<T>() * panel_width<T>(); }

template <class T>
struct PanelKernels {
    // Packs n rows of x (row-major, d columns); panels holds padded<T>(n) * d values.
    void (*pack)(const T* x, std::size_t n, std::size_t d, T* panels);
    // out[r * ld + j] = max(0, a_sq[r] + x_sq[j] - 2 a_r . x_j) for nrows rows a (row-major)
    // against the n packed points; x_sq and each output row hold padded<T>(n) values
    // (ld >= padded<T>(n)), and what lands in the padding columns is meaningless.
    void (*sqdist)(const T* a, const T* a_sq, std::size_t nrows, const T* panels, const T* x_sq, std::size_t n,
                   std::size_t d, T* out, std::size_t ld);
};

struct Kernels {
    const char* name;
    // out[r * ld + c] = q_r . g_c for nq rows of q and ng rows of g (both row-major, d columns).
    void (*dot_f32)(const float* q, std::size_t nq, const float* g, std::size_t ng, std::size_t d,
                    float* out, std::size_t ld);
    // out[r] = x_r . x_r for n rows.
    void (*sqnorm_f32)(const float* x, std::size_t n, std::size_t d, float* out);
    // a . b over d doubles.
    double (*dot_f64)(const double* a, const double* b, std::size_t d);
    PanelKernels<float> f32;
    PanelKernels<double> f64;
};

// The fastest kernels this CPU can run.
const Kernels& kernels();

// Kernels by name ("baseline", "x86-64-v3"); nullptr when unknown or not runnable here.
const Kernels* kernels_named(const char* name);

}  // namespace rerank
