// Kernels for any x86-64 (SSE2) or other processor: the project's own compile flags.
#define RERANK_ISA_NS baseline
#define RERANK_ISA_NAME "baseline"
#define RERANK_VEC_BYTES 16
#define RERANK_ROWS 2
#include "kernels_impl.hpp"
