// The writer's attention for a written token, every row at once: each row's new key and value stored in its
// own cache, then its query attends over that cache's positions, head by head. On the CPU, in float32 or
// bfloat16: a bfloat16 cache is read as float32, and every sum is float32.
//
// Why by hand: the course's attention (model/gpt.py) runs PyTorch's fused kernel once per row, with the
// slicing around it, a dozen small operations a row and a layer; a class of 30 writing one token each made
// 360 calls a step, the largest cost of a step after the products. Here a step is one call a layer. Each
// (row, head) is computed on its own, in one fixed order, by one core: a row gets the same bits alone or among
// any number of others, on any number of cores.
//
// Part of the writer's kernels (model/serving/kernels.h); written_token.cpp calls it.
#include "kernels.h"
#include "work_sharing.h"

#include <algorithm>
#include <cmath>
#include <vector>

constexpr int64_t LANES = 8;  // partial sums of a dot product: one AVX2 vector of floats, added up in a fixed order

// q · k over n numbers: LANES running sums side by side (the compiler makes them one vector), then their total.
template <typename T>
static inline float dot(const float* q, const T* k, int64_t n) {
  float part[LANES] = {0};
  int64_t j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int64_t l = 0; l < LANES; ++l) part[l] += q[j + l] * float(k[j + l]);
  for (; j < n; ++j) part[j % LANES] += q[j] * float(k[j]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

struct Scratch {  // one core's float32 working space, reused from pair to pair
  std::vector<float> query, weights, sums;
};

// One (row, head): its new key and value, stored at position `past` of K and V (capacity, head_size), then its
// query q (head_size; its key and value C and 2C further) attending over positions 0 .. past; the output
// (head_size) written to `out`.
template <typename T>
static void attend(const T* q, T* K, T* V, int64_t past, int64_t C, int64_t D, float scale, T* out, Scratch& s) {
  std::copy(q + C, q + C + D, K + past * D);  // the new position's key and value, stored
  std::copy(q + 2 * C, q + 2 * C + D, V + past * D);
  s.query.assign(q, q + D);  // as float32
  int64_t n = past + 1;  // the new token may look at every position so far, itself included
  std::vector<float>& weights = s.weights;
  weights.resize(n);
  float top = -INFINITY;
  for (int64_t t = 0; t < n; ++t) {
    weights[t] = dot(s.query.data(), K + t * D, D) * scale;
    top = std::max(top, weights[t]);
  }
  float total = 0.0f;  // softmax, its largest score subtracted first so that exp cannot overflow
  for (int64_t t = 0; t < n; ++t) {
    weights[t] = std::exp(weights[t] - top);
    total += weights[t];
  }
  s.sums.assign(D, 0.0f);
  for (int64_t t = 0; t < n; ++t) {  // the values, weighted: each output adds positions 0, 1, 2, ... in order
    float w = weights[t] / total;
    for (int64_t j = 0; j < D; ++j) s.sums[j] += w * float(V[t * D + j]);
  }
  std::copy(s.sums.begin(), s.sums.end(), out);  // T(float): bfloat16 rounds to nearest even
}

// qkv (rows, 1, 3 * C): each row's query, key and value for its newest position (c_attn's output).
// keys[i], values[i] (n_layer, 1, n_head, capacity, head_size): row i's cache (model/gpt.py's KVCache), whose
// `layer` holds positions[i] positions so far; this stores the new one after them.
// Returns (rows, 1, C) in qkv's type: each row's attention output, heads side by side, as the course's attention
// gives it.
template <typename T>
static torch::Tensor attend_rows(torch::Tensor qkv, const std::vector<torch::Tensor>& keys,
                                 const std::vector<torch::Tensor>& values, int64_t layer,
                                 const std::vector<int64_t>& positions, int64_t n_head) {
  int64_t rows = qkv.size(0), C = qkv.size(2) / 3, D = C / n_head;
  qkv = qkv.contiguous();
  auto y = torch::empty({rows, 1, C}, qkv.options());
  const T* QKV = qkv.data_ptr<T>();
  T* Y = y.data_ptr<T>();
  const float scale = 1.0f / std::sqrt(float(D));  // softmax(q kᵀ / √head_size)
  // The cores share out (row, head) pairs, never a sum.
  Chunks shared(rows * n_head);
  on_every_core(shared, [&](Chunks& work) {
    Scratch scratch;
    for (int64_t first, last; work.take(first, last);) {
      for (int64_t pair = first; pair < last; ++pair) {
        int64_t i = pair / n_head, h = pair % n_head, capacity = keys[i].size(3);
        int64_t head = (layer * n_head + h) * capacity * D;  // where this head's positions start in the cache
        attend(QKV + i * 3 * C + h * D, keys[i].data_ptr<T>() + head, values[i].data_ptr<T>() + head, positions[i],
               C, D, scale, Y + i * C + h * D, scratch);
      }
    }
  });
  return y;
}

torch::Tensor attend_new_positions(torch::Tensor qkv, const std::vector<torch::Tensor>& keys,
                                   const std::vector<torch::Tensor>& values, int64_t layer,
                                   const std::vector<int64_t>& positions, int64_t n_head) {
  int64_t rows = qkv.size(0);
  auto type = qkv.scalar_type();
  TORCH_CHECK(qkv.dim() == 3 && qkv.size(1) == 1 && (type == torch::kFloat32 || type == torch::kBFloat16),
              "attend_new_positions: qkv must be (rows, 1, 3 * n_embd), float32 or bfloat16");
  TORCH_CHECK(int64_t(keys.size()) == rows && int64_t(values.size()) == rows && int64_t(positions.size()) == rows,
              "attend_new_positions: one cache and one position per row");
  for (int64_t i = 0; i < rows; ++i) {
    TORCH_CHECK(keys[i].is_contiguous() && values[i].is_contiguous() && keys[i].scalar_type() == type &&
                values[i].scalar_type() == type, "attend_new_positions: row ", i, "'s cache must be contiguous ", type);
    TORCH_CHECK(positions[i] < keys[i].size(3), positions[i] + 1, " positions do not fit this cache of ",
                keys[i].size(3));
  }
  if (type == torch::kFloat32) return attend_rows<float>(qkv, keys, values, layer, positions, n_head);
  return attend_rows<c10::BFloat16>(qkv, keys, values, layer, positions, n_head);
}
