// How the writer's kernels share their work between the cores: in small chunks that each core takes in turn, as it
// becomes free, rather than in one equal share each. A core that another thread borrows for a while (the server's
// event loop taking students' requests, a neighbour on a shared cloud CPU) then takes fewer chunks, and the others
// do not wait for it at the end; rows whose caches differ in length balance out too. A chunk is computed by one core
// as any core would compute it: which core takes it changes no bit.
//
// Part of the writer's kernels (model/serving/kernels.h); row_products.cpp and row_attention.cpp use it.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

constexpr int64_t CHUNKS_PER_CORE = 8;  // enough for a slowed core's share to be taken up by the others

// The items 0 .. count-1 in chunks of `size` (a multiple of `unit`, about CHUNKS_PER_CORE chunks a core), each
// taken by one core.
class Chunks {
 public:
  Chunks(int64_t count, int64_t unit = 1)
      : count_(count), size_(unit * std::max<int64_t>(1, count / (unit * CHUNKS_PER_CORE * at::get_num_threads()))) {}

  // The next chunk [first, last) that no core has taken; false when none is left.
  bool take(int64_t& first, int64_t& last) {
    first = next_.fetch_add(size_, std::memory_order_relaxed);
    last = std::min(first + size_, count_);
    return first < count_;
  }

 private:
  const int64_t count_, size_;
  std::atomic<int64_t> next_{0};
};

// core(chunks) on each of PyTorch's threads at once (one thread where PyTorch runs one, or inside a parallel
// region): each sets up what it keeps between its chunks, then takes chunks until none is left.
template <typename Core>
inline void on_every_core(Chunks& chunks, const Core& core) {
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) { core(chunks); });
}
