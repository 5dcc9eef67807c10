// Picks the compact kernel variant once, from what the running CPU reports.
//
// No AVX-512 variant: on the Zen 4 this was measured on, a 16-wide build scanned 1M rows no faster than
// the AVX2 one (the scan is bound by memory, and Zen 4 runs 512-bit operations as two 256-bit halves).
#include <cstring>

#include "compact_kernels.hpp"
#include "kernels.hpp"

namespace rerank {
namespace compact_baseline {
extern const CompactKernels compact_table;
}
#ifdef RERANK_HAVE_X86_64_V3
namespace compact_x86_64_v3 {
extern const CompactKernels compact_table;
}
#endif

const CompactKernels* compact_kernels_named(const char* name) {
    if (std::strcmp(name, compact_baseline::compact_table.name) == 0) return &compact_baseline::compact_table;
#ifdef RERANK_HAVE_X86_64_V3
    // The dense kernels' own check of the CPU: F16C comes with x86-64-v3.
    if (std::strcmp(name, compact_x86_64_v3::compact_table.name) == 0 && kernels_named("x86-64-v3"))
        return &compact_x86_64_v3::compact_table;
#endif
    return nullptr;
}

const CompactKernels& compact_kernels() {
    static const CompactKernels& chosen =
        compact_kernels_named("x86-64-v3") ? *compact_kernels_named("x86-64-v3") : compact_baseline::compact_table;
    return chosen;
}

}  // namespace rerank
