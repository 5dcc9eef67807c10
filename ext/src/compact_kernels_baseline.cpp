// Compact kernels for any x86-64 (SSE2; float16 widened in software) or other processor.
#define RERANK_ISA_NS compact_baseline
#define RERANK_ISA_NAME "baseline"
#define RERANK_VEC_BYTES 16
#include "compact_kernels_impl.hpp"
