// Runs independent tasks on a few std::threads (the caller's thread is one of them).
//
// Tasks are handed out through an atomic counter, so a worker takes its tasks in
// increasing order. The first exception thrown by any task is re-thrown in the
// caller once every worker has stopped; the remaining tasks are skipped.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "invalid_input.hpp"

namespace rerank {

constexpr std::size_t kMaxThreads = 1024;
constexpr std::size_t kWorkPerThread = 1 << 20;  // multiply-adds below which another thread costs more than it saves

// The one rule for the threads of a step: `requested` of them (0: one per core; negative is refused),
// but never more than kMaxThreads, than tasks, or than one per kWorkPerThread of work.
inline unsigned resolve_threads(long requested, std::size_t tasks, std::size_t work) {
    if (requested < 0)
        throw InvalidInput("threads must be at least 0 (0: one per core), got " + std::to_string(requested));
    std::size_t n = requested > 0 ? static_cast<std::size_t>(requested) : std::thread::hardware_concurrency();
    n = std::max<std::size_t>(1, std::min({n, tasks, work / kWorkPerThread, kMaxThreads}));
    return static_cast<unsigned>(n);
}

// body(task, worker) for task in [0, tasks); worker in [0, threads) names the
// thread, so a body can keep scratch space per worker.
template <class Body>
void parallel_for(std::size_t tasks, unsigned threads, Body&& body) {
    std::atomic<std::size_t> next{0};
    std::exception_ptr error;
    std::mutex error_mutex;
    auto work = [&](unsigned worker) {
        for (std::size_t task; (task = next.fetch_add(1)) < tasks;) {
            try {
                body(task, worker);
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                next.store(tasks);
            }
        }
    };
    std::vector<std::thread> helpers;
    helpers.reserve(threads > 0 ? threads - 1 : 0);
    for (unsigned w = 1; w < threads; ++w) {
        try {
            helpers.emplace_back(work, w);
        } catch (const std::system_error&) {
            break;  // no more threads to be had: the ones running take the remaining tasks
        }
    }
    work(0);
    for (auto& t : helpers) t.join();
    if (error) std::rethrow_exception(error);
}

}  // namespace rerank
