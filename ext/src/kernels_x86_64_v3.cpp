// Kernels for x86-64-v3 processors (AVX2, FMA; Haswell, Zen and later);
// CMake compiles this file alone with -march=x86-64-v3.
#define RERANK_ISA_NS x86_64_v3
#define RERANK_ISA_NAME "x86-64-v3"
#define RERANK_VEC_BYTES 32
#define RERANK_ROWS 4
#include "kernels_impl.hpp"
