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

#include "compact_topk.hpp"
#include "cosine.hpp"
#include "k_reciprocal.hpp"
#include "kernels.hpp"
#include "matrix.hpp"
#include "neighbour_graph.hpp"
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

// The graph of a gallery; the caller holds it and the gallery still while it is changed or read.
using Graph = rerank::NeighbourGraph;

std::vector<std::pair<std::int32_t, double>> entries(const std::vector<Graph::Entry>& list) {
    std::vector<std::pair<std::int32_t, double>> out;
    for (const auto& e : list) out.emplace_back(e.row, e.sq);
    return out;
}

Output<float> graph_k_reciprocal(const Graph& graph, const Input& query, const Input& gallery, long long k1,
                                 long long k2, double lambda_value, long threads) {
    const auto q = view(query, "query"), g = view(gallery, "gallery");
    if (q.rows != 1) throw rerank::InvalidInput("query must be one row, got " + std::to_string(q.rows));
    auto [dist, out] = new_output<float>(1, g.rows);
    {
        nb::gil_scoped_release unlocked;
        graph.k_reciprocal(q.data, q.cols, g, count(k1), count(k2), lambda_value, threads, out);
    }
    return dist;
}

std::vector<std::string> available_kernels() {
    std::vector<std::string> names;
    for (const char* name : {"baseline", "x86-64-v3"})
        if (rerank::kernels_named(name)) names.emplace_back(name);
    return names;
}

// --- compact galleries: float16 (passed as its uint16 bits) or int8 rows, with a float32 scale per row ---

template <class T>
using CompactRows = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using RowScale = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

template <class T>
rerank::CompactView compact_view(const CompactRows<T>& rows, const RowScale& scale) {
    if (scale.shape(0) != rows.shape(0))
        throw rerank::InvalidInput("scale has " + std::to_string(scale.shape(0)) + " values for " +
                                   std::to_string(rows.shape(0)) + " gallery rows");
    constexpr auto type = sizeof(T) == 2 ? rerank::CompactType::f16 : rerank::CompactType::i8;
    return {rows.data(), type, rows.shape(0), rows.shape(1), scale.data()};
}

const rerank::CompactKernels& pick_compact(const std::string& isa) {
    if (isa.empty()) return rerank::compact_kernels();
    const rerank::CompactKernels* k = rerank::compact_kernels_named(isa.c_str());
    if (!k) throw rerank::InvalidInput("compact kernels '" + isa + "' are unknown or not supported by this CPU");
    return *k;
}

template <class T>
std::pair<Output<std::int64_t>, Output<float>> compact_topk(const Input& queries, const CompactRows<T>& rows,
                                                              const RowScale& scale, long long k, long threads,
                                                              const std::string& isa) {
    const auto q = view(queries, "queries");
    const auto g = compact_view(rows, scale);
    const std::size_t kk = std::min(count(k), g.rows);
    const auto& kern = pick_compact(isa);
    auto [indices, idx] = new_output<std::int64_t>(q.rows, kk);
    auto [scores, sc] = new_output<float>(q.rows, kk);
    {
        nb::gil_scoped_release unlocked;
        rerank::compact_topk(q, g, kk, threads, kern, idx, sc);
    }
    return {indices, scores};
}

template <class T>
Output<float> compact_scores(const Input& queries, const CompactRows<T>& rows, const RowScale& scale, long threads,
                             const std::string& isa) {
    const auto q = view(queries, "queries");
    const auto g = compact_view(rows, scale);
    const auto& kern = pick_compact(isa);
    auto [out, data] = new_output<float>(q.rows, g.rows);
    {
        nb::gil_scoped_release unlocked;
        rerank::compact_scores(q, g, threads, kern, data);
    }
    return out;
}

std::vector<std::string> available_compact_kernels() {
    std::vector<std::string> names;
    for (const char* name : {"baseline", "x86-64-v3"})
        if (rerank::compact_kernels_named(name)) names.emplace_back(name);
    return names;
}

void bind_compact(nb::module_& m) {
    const char* topk_doc = "(indices int64 (Q, k), scores float32 (Q, k)) over compact rows: descending cosine "
                           "(q . row) * scale, ties by lower index.";
    const char* scores_doc = "Cosines float32 (Q, G) of every query with every compact row.";
    m.def("compact_topk_f16", &compact_topk<std::uint16_t>, "queries"_a, "rows"_a.noconvert(), "scale"_a.noconvert(),
          "k"_a, "threads"_a = 0, "isa"_a = "", topk_doc);
    m.def("compact_topk_i8", &compact_topk<std::int8_t>, "queries"_a, "rows"_a.noconvert(), "scale"_a.noconvert(),
          "k"_a, "threads"_a = 0, "isa"_a = "", topk_doc);
    m.def("compact_scores_f16", &compact_scores<std::uint16_t>, "queries"_a, "rows"_a.noconvert(),
          "scale"_a.noconvert(), "threads"_a = 0, "isa"_a = "", scores_doc);
    m.def("compact_scores_i8", &compact_scores<std::int8_t>, "queries"_a, "rows"_a.noconvert(),
          "scale"_a.noconvert(), "threads"_a = 0, "isa"_a = "", scores_doc);
    m.def("compact_kernels", [] { return std::string(rerank::compact_kernels().name); },
          "Name of the compact kernel variant this CPU runs by default.");
    m.def("available_compact_kernels", &available_compact_kernels, "Compact kernel variants this CPU can run.");
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
    nb::class_<Graph>(m, "NeighbourGraph",
                      "Per gallery row: nearest rows (itself first) and farthest, kept up to date row by row.")
        .def("__init__", [](Graph* self, long long k1_max, long long margin) { new (self) Graph(count(k1_max), count(margin)); },
             "k1_max"_a, "margin"_a)
        .def_prop_ro("k1_max", &Graph::k1_max)
        .def_prop_ro("capacity", &Graph::capacity)
        .def_prop_ro("size", &Graph::size)
        .def_prop_ro("built", &Graph::built)
        .def("build",
             [](Graph& graph, const Input& gallery, long threads, const std::string& isa) {
                 const auto g = view(gallery, "gallery");
                 const auto& kern = pick(isa);
                 nb::gil_scoped_release unlocked;
                 graph.build(g, threads, kern);
             },
             "gallery"_a, "threads"_a = 0, "isa"_a = "", "From scratch: O(G^2 d).")
        .def("upserted",
             [](Graph& graph, const Input& gallery, long long row) {
                 const auto g = view(gallery, "gallery");
                 nb::gil_scoped_release unlocked;
                 graph.upserted(g, count(row));
             },
             "gallery"_a, "row"_a, "Row `row` of gallery was appended (row == size) or overwritten.")
        .def("deleted",
             [](Graph& graph, const Input& gallery, long long row) {
                 const auto g = view(gallery, "gallery");
                 nb::gil_scoped_release unlocked;
                 graph.deleted(g, count(row));
             },
             "gallery"_a, "row"_a, "Row `row` was deleted and the last row moved into it; gallery is after the move.")
        .def("nearest", [](const Graph& graph, long long row) { return entries(graph.nearest(count(row))); }, "row"_a,
             "[(row, squared distance)] kept for a row, nearest first.")
        .def("farthest", [](const Graph& graph, long long row) { return entries(graph.farthest(count(row))); }, "row"_a,
             "[(row, squared distance)] kept for a row, farthest first.")
        .def("holders", &Graph::holders, "row"_a, "Rows whose kept neighbours include a row (reverse lists), unordered.")
        .def("k_reciprocal", &graph_k_reciprocal, "query"_a, "gallery"_a, "k1"_a, "k2"_a, "lambda_value"_a,
             "threads"_a = 0, "k-reciprocal distances of one query (1, d) to the gallery, float32 (1, G).");
    m.def("kernels", [] { return std::string(rerank::kernels().name); },
          "Name of the kernel variant this CPU runs by default.");
    m.def("available_kernels", &available_kernels, "Kernel variants this CPU can run.");
    bind_compact(m);
}
