// Picks the kernel variant once, from what the running CPU reports.
#include <cstring>

#include "kernels.hpp"

namespace rerank {
namespace baseline {
extern const Kernels table;
}
#ifdef RERANK_HAVE_X86_64_V3
namespace x86_64_v3 {
extern const Kernels table;
}
#endif

namespace {

bool cpu_has_x86_64_v3() {
#ifdef RERANK_HAVE_X86_64_V3
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
#else
    return false;
#endif
}

}  // namespace

const Kernels* kernels_named(const char* name) {
    if (std::strcmp(name, baseline::table.name) == 0) return &baseline::table;
#ifdef RERANK_HAVE_X86_64_V3
    if (std::strcmp(name, x86_64_v3::table.name) == 0 && cpu_has_x86_64_v3()) return &x86_64_v3::table;
#endif
    return nullptr;
}

const Kernels& kernels() {
    static const Kernels& chosen = cpu_has_x86_64_v3() ? *kernels_named("x86-64-v3") : baseline::table;
    return chosen;
}

}  // namespace rerank
