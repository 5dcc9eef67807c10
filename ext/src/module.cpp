// Python bindings of the re-ranker: streams._rerank.
//
// Arrays arrive as nb::ndarray views: float32 C-contiguous input is used in place,
// anything else nanobind can convert is copied once. Results are allocated before
// the GIL is released and handed to numpy without a copy. The core checks every
// argument and throws rerank::InvalidInput, which nanobind raises as ValueError; this
// file only makes views and sizes of what Python passes.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cosine.hpp"
#include "k_reciprocal.hpp"
#include "kernels.hpp"
#include "matrix.hpp"
#include "query_expansion.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using Input = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;
template <class T>
using Output = nb::ndarray<nb::numpy, T, nb::ndim<2>>;

rerank::MatrixView view(const Input& a, const char* what) {
    if (a.ndim() != 2)
        throw rerank::InvalidInput(std::string(what) + " must be a 2-D array (rows x dimensions), got " +
                                   std::to_string(a.ndim()) + " dimension(s)");
    return {a.data(), a.shape(0), a.shape(1)};
}

// A numpy array that owns a fresh buffer; written while the GIL is released.
template <class T>
std::pair<Output<T>, T*> new_output(std::size_t rows, std::size_t cols) {
    std::unique_ptr<T[]> buffer(new T[rows * cols > 0 ? rows * cols : 1]);
    T* data = buffer.get();
    nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
    buffer.release();
    return {Output<T>(data, {rows, cols}, owner), data};
}

// Python's ints are signed, the core's counts are not: a negative count is 0, which the core refuses.
std::size_t count(long long value) { return value < 0 ? 0 : static_cast<std::size_t>(value); }

const rerank::Kernels& pick(const std::string& isa) {
    if (isa.empty()) return rerank::kernels();
    const rerank::Kernels* k = rerank::kernels_named(isa.c_str());
    if (!k) throw rerank::InvalidInput("kernels '" + isa + "' are unknown or not supported by this CPU");
    return *k;
}

std::pair<Output<std::int64_t>, Output<float>> cosine_topk(const Input& queries, const Input& gallery, long long k,
                                                             long threads, const std::string& isa) {
    const auto q = view(queries, "queries"), g = view(gallery, "gallery");
    const std::size_t kk = std::min(count(k), g.rows);
    const auto& kern = pick(isa);
    auto [indices, idx] = new_output<std::int64_t>(q.rows, kk);
    auto [scores, sc] = new_output<float>(q.rows, kk);
    {
        nb::gil_scoped_release unlocked;
        rerank::cosine_topk(q, g, kk, threads, kern, idx, sc);
    }
    return {indices, scores};
}

std::pair<Output<std::int64_t>, Output<float>> query_expansion(const Input& queries, const Input& gallery,
                                                                 long long k, double alpha, long long neighbours,
                                                                 long threads, const std::string& isa) {
    const auto q = view(queries, "queries"), g = view(gallery, "gallery");
    const std::size_t kk = std::min(count(k), g.rows);
    const std::size_t nn = count(neighbours);
    const auto& kern = pick(isa);
    auto [indices, idx] = new_output<std::int64_t>(q.rows, kk);
    auto [scores, sc] = new_output<float>(q.rows, kk);
    {
        nb::gil_scoped_release unlocked;
        rerank::query_expansion(q, g, kk, alpha, nn, threads, kern, idx, sc);
    }
    return {indices, scores};
}

Output<float> k_reciprocal(const Input& queries, const Input& gallery, long long k1, long long k2,
                           double lambda_value, long threads, const std::string& isa) {
    const auto q = view(queries, "queries"), g = view(gallery, "gallery");
    const std::size_t kk1 = count(k1), kk2 = count(k2);
    const auto& kern = pick(isa);
    auto [dist, out] = new_output<float>(q.rows, g.rows);
    {
        nb::gil_scoped_release unlocked;
        rerank::k_reciprocal(q, g, kk1, kk2, lambda_value, threads, kern, out);
    }
    return dist;
}

std::vector<std::string> available_kernels() {
    std::vector<std::string> names;
    for (const char* name : {"baseline", "x86-64-v3"})
        if (rerank::kernels_named(name)) names.emplace_back(name);
    return names;
}

}  // namespace

NB_MODULE(_rerank, m) {
    m.doc() = "C++ re-ranker: cosine top-k, k-reciprocal re-ranking, alpha query expansion.";
    m.def("cosine_topk", &cosine_topk, "queries"_a, "gallery"_a, "k"_a, "threads"_a = 0, "isa"_a = "",
          "(indices int64 (Q, k), scores float32 (Q, k)): descending cosine similarity, ties by lower index.");
    m.def("query_expansion", &query_expansion, "queries"_a, "gallery"_a, "k"_a, "alpha"_a, "neighbours"_a,
          "threads"_a = 0, "isa"_a = "", "Alpha query expansion over the nearest neighbours, then cosine_topk.");
    m.def("k_reciprocal", &k_reciprocal, "queries"_a, "gallery"_a, "k1"_a, "k2"_a, "lambda_value"_a,
          "threads"_a = 0, "isa"_a = "", "k-reciprocal re-ranked distances, float32 (Q, G).");
    m.def("kernels", [] { return std::string(rerank::kernels().name); },
          "Name of the kernel variant this CPU runs by default.");
    m.def("available_kernels", &available_kernels, "Kernel variants this CPU can run.");
}
