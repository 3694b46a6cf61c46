// The shared CPU thread pool (see cpu_parallel.h).

#include "cpu_parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace semantic::cpu {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// OMP_NUM_THREADS, else OPENBLAS_NUM_THREADS (what the benchmarks set to pin every engine's
// threads), else the machine's cores, at most 8: one decode step's matmuls are a few MB each.
int configured_threads() {
  for (const char* name : {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"}) {
    if (const char* v = std::getenv(name)) {
      int n = std::atoi(v);
      if (n > 0) return std::min(n, 64);
    }
  }
  int hw = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(hw, 1, 8);
}

// A small persistent pool: the caller and the workers take chunks of columns from one atomic
// counter. Workers spin a short while after a job (see SPIN_US), then sleep on a condition variable.
class Pool {
 public:
  explicit Pool(int threads) : threads_(threads) {
    for (int i = 1; i < threads_; i++) std::thread([this] { work(); }).detach();
  }

  int threads() const { return threads_; }

  // Runs fn(ctx, begin, end) over [0, total) in chunks of `chunk`; returns when all are done.
  void run(void (*fn)(void*, int, int), void* ctx, int total, int chunk) {
    const int chunks = (total + chunk - 1) / chunk;
    std::unique_lock<std::mutex> busy(run_mutex_, std::try_to_lock);
    if (threads_ == 1 || chunks <= 1 || !busy.owns_lock()) {
      fn(ctx, 0, total);
      return;
    }
    fn_ = fn;
    ctx_ = ctx;
    total_ = total;
    chunk_ = chunk;
    chunks_ = chunks;
    next_.store(0);
    done_.store(0);
    const uint64_t open = generation_.load() + 1;  // odd: a job is open
    generation_.store(open);
    if (sleepers_.load() > 0) {
      { std::lock_guard<std::mutex> lock(mutex_); }
      wake_.notify_all();
    }
    take_chunks();
    for (int spins = 0; done_.load(std::memory_order_acquire) < chunks; spins++) {
      if (spins < 20000) cpu_relax();
      else std::this_thread::yield();
    }
    generation_.store(open + 1);  // closed: late workers leave without touching the counters
    while (inside_.load() > 0) cpu_relax();
  }

 private:
  void take_chunks() {
    for (int c; (c = next_.fetch_add(1)) < chunks_;) {
      const int begin = c * chunk_;
      fn_(ctx_, begin, std::min(total_, begin + chunk_));
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void work() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g = wait_for_job(seen);
      seen = g;
      inside_.fetch_add(1);
      if (generation_.load() == g) take_chunks();
      inside_.fetch_sub(1);
    }
  }

  // Blocks until an open job newer than `seen` appears; returns its generation.
  uint64_t wait_for_job(uint64_t seen) {
    auto fresh = [&](uint64_t g) { return (g & 1) && g != seen; };
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(SPIN_US);
    for (int i = 0;; i++) {
      uint64_t g = generation_.load();
      if (fresh(g)) return g;
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) break;
      cpu_relax();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    sleepers_.fetch_add(1);
    uint64_t g;
    wake_.wait(lock, [&] { return fresh(g = generation_.load()); });
    sleepers_.fetch_sub(1);
    return g;
  }

  // Long enough to bridge the other ops between two kernels: a decode step's are microseconds
  // apart, but at an agent turn's ~150 rows the copies, adds and cache writes between a layer's
  // kernels take up to a few hundred, and each sleep and wake-up cost tens (a warm turn's forward
  // was 3-4% slower at 50 us). Not much longer, because a spinning worker takes a core from the
  // graph-building thread on a small machine.
  static constexpr int SPIN_US = 400;

  const int threads_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<int> inside_{0};
  std::atomic<int> next_{0};
  std::atomic<int> done_{0};
  void (*fn_)(void*, int, int) = nullptr;
  void* ctx_ = nullptr;
  int total_ = 0, chunk_ = 1, chunks_ = 0;
};

// Leaked on purpose: detached workers must never see it destroyed at process exit.
Pool& pool() {
  static Pool* p = new Pool(configured_threads());
  return *p;
}

}  // namespace

int threads() {
  return pool().threads();
}

void parallel_for(void (*fn)(void*, int, int), void* ctx, int total, int chunk) {
  pool().run(fn, ctx, total, chunk);
}

}  // namespace semantic::cpu
