// The kernels' thread pool: parallel loops that degrade with the CPU they get, never
// collapse.
//
// OpenMP's barriers spin while they wait. On a machine where other processes keep the
// cores busy, a thread that waits for a descheduled partner spins away its whole slice,
// every barrier: batch-1 decode fell to 5% of its quiet speed with two busy processes on
// two cores. This pool is built for that case:
//  - The caller's thread drives. It publishes one loop at a time and works on it itself;
//    workers CLAIM chunks of it (an atomic counter), so a worker that is descheduled, or
//    has not woken yet, holds back nothing it has not claimed: the caller does the rest.
//  - Every wait spins for SPIN_NS (long enough to bridge the short gaps between the
//    loops of one decode step), then sleeps in the kernel (futex), so a waiting thread
//    hands its core to whoever can use it — often the very thread it waits for.
//  - Each chunk is a range of whole items (rows, tiles, heads): which thread computes an
//    item never changes how it is computed, so results do not depend on the split or on
//    the thread count.
//  - One loop at a time per process: a second caller (another Python thread) that finds
//    the pool busy runs its loops on its own thread instead of waiting for the pool.
// No OpenMP: the library links no OpenMP runtime of its own beside torch's.
#pragma once
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>
#if defined(__linux__) && !defined(LLMOS_NO_FUTEX)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#define LLMOS_FUTEX 1
#endif

namespace pool {

// How long a waiting thread spins before it sleeps. The loops of one decode step follow
// each other within microseconds, so a spinning worker catches the next one without a
// wake-up (~5-50 us through the kernel); a wait longer than this means the thread waited
// for is not running, and spinning on would only take the core from it.
#ifndef LLMOS_SPIN_NS
#define LLMOS_SPIN_NS 50000
#endif
constexpr int64_t SPIN_NS = LLMOS_SPIN_NS;
constexpr int MAX_THREADS = 256;
// The next-item value of a loop closed to claims (above any loop's item count).
constexpr uint64_t CLOSED = 0x7fffffff;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Sleep while w == v (returns at once if it is not; may return spuriously).
inline void sleep_while(std::atomic<uint32_t>& w, uint32_t v) {
#ifdef LLMOS_FUTEX
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&w), FUTEX_WAIT_PRIVATE, v, nullptr,
          nullptr, 0);
#else
  w.wait(v);  // C++20
#endif
}

inline void wake_all(std::atomic<uint32_t>& w) {
#ifdef LLMOS_FUTEX
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&w), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
#else
  w.notify_all();
#endif
}

// Spin until ready() or SPIN_NS pass; whether ready() held.
template <class Ready>
inline bool spin_until(Ready ready) {
  using clock = std::chrono::steady_clock;
  const auto end = clock::now() + std::chrono::nanoseconds(SPIN_NS);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (clock::now() >= end) return false;
  }
}

// body(ctx, begin, end) computes items [begin, end) of a loop.
using Body = void (*)(const void* ctx, int begin, int end);

class Pool {
 public:
  // Run body over items [0, n) in chunks of at least `grain` items on up to `threads`
  // threads, the caller's among them; return when every item is done. The caller must
  // hold the pool (Team does).
  void run(int n, int grain, int threads, Body body, const void* ctx) {
    threads = add_workers(threads - 1) + 1;
    if (threads <= 1 || n <= grain) return body(ctx, 0, n);
    const uint32_t gen = ++generation_;
    // Close the last loop to claims before its fields change: a worker that read its
    // (generation, next item) may be about to compare the item with n_, and must not
    // claim past the last loop's end because it saw this loop's larger n_ (it did, and
    // hung the caller on a done_ count that overshot). Any worker that sees a field
    // written below (release/acquire) then fails its exchange on this value.
    next_.store(uint64_t(gen) << 32 | CLOSED, std::memory_order_relaxed);
    n_.store(n, std::memory_order_release);
    grain_.store(grain, std::memory_order_release);
    threads_.store(threads, std::memory_order_release);
    body_.store(body, std::memory_order_relaxed);  // read only by holders of a claim
    ctx_.store(ctx, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    next_.store(uint64_t(gen) << 32, std::memory_order_release);  // open
    published_.store(gen);  // seq_cst: pairs with the sleepers_ count (see await_loop)
    if (sleepers_.load() > 0) wake_all(published_);
    work(gen);
    // Wait for the chunks other threads claimed.
    const uint32_t want = uint32_t(n);
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) == want; })) {
      caller_sleeping_.store(1);
      for (uint32_t d; (d = done_.load()) != want;) sleep_while(done_, d);
      caller_sleeping_.store(0, std::memory_order_relaxed);
    }
  }

  std::mutex busy;  // held by the Team driving the pool

 private:
  // Make sure `want` workers exist (capped; a failed thread start is not an error: fewer
  // threads do the work); return how many exist.
  int add_workers(int want) {
    if (want > MAX_THREADS - 1) want = MAX_THREADS - 1;
    while (n_workers_ < want) {
      try {
        std::thread(&Pool::worker, this, n_workers_, generation_).detach();
      } catch (const std::system_error&) {
        break;
      }
      ++n_workers_;
    }
    return want < n_workers_ ? want : n_workers_;
  }

  // Claim the next chunk of loop `gen`: [b, e) and the loop's size n; false when the loop
  // has no unclaimed items (or has been replaced by a newer one).
  bool claim(uint32_t gen, int& b, int& e, int& n) {
    uint64_t s = next_.load(std::memory_order_acquire);
    for (;;) {
      if (uint32_t(s >> 32) != gen) return false;
      // If these reads see the next loop's fields, run() closed this loop first, and the
      // exchange below fails: a successful claim used this loop's fields.
      n = n_.load(std::memory_order_acquire);
      const int i = int(uint32_t(s));
      if (i >= n) return false;
      // Guided: big chunks first (fewer claims, longer streams for the prefetcher), small
      // ones at the end, so threads finish together and a descheduled thread that holds
      // a late chunk holds little.
      const int threads = threads_.load(std::memory_order_acquire);
      int c = (n - i) / (2 * threads);
      const int grain = grain_.load(std::memory_order_acquire);
      c = c < grain ? grain : c;
      c = c > n - i ? n - i : c;
      if (next_.compare_exchange_weak(s, s + uint64_t(c), std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        b = i;
        e = i + c;
        return true;
      }
    }
  }

  // Compute chunks of loop `gen` until none is left.
  void work(uint32_t gen) {
    int b, e, n;
    while (claim(gen, b, e, n)) {
      // The loop cannot end before this chunk is done, so its body and ctx hold.
      body_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), b, e);
      if (done_.fetch_add(uint32_t(e - b)) + uint32_t(e - b) == uint32_t(n) &&
          caller_sleeping_.load())
        wake_all(done_);
    }
  }

  // Wait for a loop newer than `seen` (spinning first if `spin`); return its generation.
  uint32_t await_loop(uint32_t seen, bool spin) {
    uint32_t gen = seen;
    if (spin && spin_until([&] {
          return (gen = published_.load(std::memory_order_acquire)) != seen;
        }))
      return gen;
    // seq_cst on both sides: either run() sees this sleeper and wakes it, or this sees
    // the new generation before sleeping.
    sleepers_.fetch_add(1);
    while ((gen = published_.load()) == seen) sleep_while(published_, seen);
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
    return gen;
  }

  void worker(int id, uint32_t seen) {
    for (bool active = true;;) {
      seen = await_loop(seen, active);
      // Workers beyond this loop's thread count sit it out (the thread setting was
      // lowered), and go back to sleep without spinning.
      active = id + 1 < threads_.load(std::memory_order_relaxed);
      if (active) work(seen);
    }
  }

  // Written by the driving thread only.
  uint32_t generation_ = 0;
  int n_workers_ = 0;
  // The current loop, published through next_ / published_.
  std::atomic<int> n_{0}, grain_{1}, threads_{1};
  std::atomic<Body> body_{nullptr};
  std::atomic<const void*> ctx_{nullptr};
  // Apart, so claims, completions and wake-ups do not share cache lines.
  alignas(64) std::atomic<uint64_t> next_{0};  // generation << 32 | next unclaimed item
  alignas(64) std::atomic<uint32_t> done_{0};  // items finished (the caller sleeps on it)
  std::atomic<uint32_t> caller_sleeping_{0};
  alignas(64) std::atomic<uint32_t> published_{0};  // generation (workers sleep on it)
  std::atomic<int> sleepers_{0};
};

// The process's pool. A forked child gets a fresh one: the parent's workers do not exist
// there (the old object is left behind, never touched again).
inline Pool*& instance_slot() {
  static Pool* p = nullptr;
  return p;
}

inline Pool& instance() {
  static std::once_flag once;
  std::call_once(once, [] {
    instance_slot() = new Pool;
    pthread_atfork(nullptr, nullptr, [] { instance_slot() = new Pool; });
  });
  return *instance_slot();
}

// The pool held for the duration of one kernel call (or the caller alone, when another
// thread of the process holds it, or when one thread is asked for).
class Team {
 public:
  explicit Team(int threads) : threads_(threads < 1 ? 1 : threads) {
    if (threads_ > 1) {
      pool_ = &instance();
      if (!pool_->busy.try_lock()) {
        pool_ = nullptr;
        threads_ = 1;
      }
    }
  }
  ~Team() {
    if (pool_) pool_->busy.unlock();
  }
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;

  // f(begin, end) over items [0, n), in chunks of at least `grain` items. A loop of at
  // most `grain` items runs on the calling thread: waking others would cost more.
  template <class F>
  void for_each(int n, int grain, const F& f) {
    if (n <= 0) return;
    if (!pool_ || n <= grain) return f(0, n);
    pool_->run(n, grain, threads_,
               [](const void* ctx, int b, int e) { (*static_cast<const F*>(ctx))(b, e); }, &f);
  }

 private:
  int threads_;
  Pool* pool_ = nullptr;
};

}  // namespace pool
