// Compact kernels for x86-64-v3 (AVX2, FMA, F16C); CMake compiles this file alone with -march=x86-64-v3.
#define RERANK_ISA_NS compact_x86_64_v3
#define RERANK_ISA_NAME "x86-64-v3"
#define RERANK_VEC_BYTES 32
#include "compact_kernels_impl.hpp"
