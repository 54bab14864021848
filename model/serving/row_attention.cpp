// The writer's attention for a written token, every row at once: each row's new key and value stored in its
// own cache, then its query attends over that cache's positions, head by head. float32, on the CPU.
//
// Why by hand: the course's attention (model/gpt.py) runs PyTorch's fused kernel once per row, with the
// slicing around it, a dozen small operations a row and a layer; a class of 30 writing one token each made
// 360 calls a step, the largest cost of a step after the products. Here a step is one call a layer. Each
// (row, head) is computed on its own, in one fixed order, by one core: a row gets the same bits alone or among
// any number of others, on any number of cores.
//
// Built by PyTorch's C++ extension loader on first use (model/serving/kernels.py); model/serving/attention.py
// calls it.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

constexpr int64_t LANES = 8;  // partial sums of a dot product: one AVX2 vector of floats, added up in a fixed order

// q · k over n numbers: LANES running sums side by side (the compiler makes them one vector), then their total.
static inline float dot(const float* q, const float* k, int64_t n) {
  float part[LANES] = {0};
  int64_t j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int64_t l = 0; l < LANES; ++l) part[l] += q[j + l] * k[j + l];
  for (; j < n; ++j) part[j % LANES] += q[j] * k[j];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// qkv (rows, 1, 3 * C): each row's query, key and value for its newest position (c_attn's output).
// keys[i], values[i] (n_layer, 1, n_head, capacity, head_size): row i's cache (model/gpt.py's KVCache), whose
// `layer` holds positions[i] positions so far; this stores the new one after them.
// Returns (rows, 1, C): each row's attention output, heads side by side, as the course's attention gives it.
torch::Tensor attend_new_positions(torch::Tensor qkv, std::vector<torch::Tensor> keys,
                                   std::vector<torch::Tensor> values, int64_t layer, std::vector<int64_t> positions,
                                   int64_t n_head) {
  int64_t rows = qkv.size(0), C = qkv.size(2) / 3, D = C / n_head;
  TORCH_CHECK(qkv.dim() == 3 && qkv.size(1) == 1 && qkv.scalar_type() == torch::kFloat32,
              "attend_new_positions: qkv must be (rows, 1, 3 * n_embd) float32");
  TORCH_CHECK(int64_t(keys.size()) == rows && int64_t(values.size()) == rows && int64_t(positions.size()) == rows,
              "attend_new_positions: one cache and one position per row");
  for (int64_t i = 0; i < rows; ++i) {
    TORCH_CHECK(keys[i].is_contiguous() && values[i].is_contiguous() && keys[i].scalar_type() == torch::kFloat32,
                "attend_new_positions: row ", i, "'s cache must be contiguous float32");
    TORCH_CHECK(positions[i] < keys[i].size(3), positions[i] + 1, " positions do not fit this cache of ",
                keys[i].size(3));
  }
  qkv = qkv.contiguous();
  auto y = torch::empty({rows, 1, C}, qkv.options());
  const float* QKV = qkv.data_ptr<float>();
  float* Y = y.data_ptr<float>();
  const float scale = 1.0f / std::sqrt(float(D));  // softmax(q kᵀ / √head_size)
  // The cores share out (row, head) pairs, never a sum.
  at::parallel_for(0, rows * n_head, 1, [&](int64_t first, int64_t last) {
    std::vector<float> weights;
    for (int64_t pair = first; pair < last; ++pair) {
      int64_t i = pair / n_head, h = pair % n_head, past = positions[i], capacity = keys[i].size(3);
      float* K = keys[i].data_ptr<float>() + (layer * n_head + h) * capacity * D;  // this head's positions
      float* V = values[i].data_ptr<float>() + (layer * n_head + h) * capacity * D;
      const float* q = QKV + i * 3 * C + h * D;
      std::copy(q + C, q + C + D, K + past * D);  // the new position's key and value, stored
      std::copy(q + 2 * C, q + 2 * C + D, V + past * D);
      int64_t n = past + 1;  // the new token may look at every position so far, itself included
      weights.resize(n);
      float top = -INFINITY;
      for (int64_t t = 0; t < n; ++t) {
        weights[t] = dot(q, K + t * D, D) * scale;
        top = std::max(top, weights[t]);
      }
      float total = 0.0f;  // softmax, its largest score subtracted first so that exp cannot overflow
      for (int64_t t = 0; t < n; ++t) {
        weights[t] = std::exp(weights[t] - top);
        total += weights[t];
      }
      float* out = Y + i * C + h * D;
      std::fill(out, out + D, 0.0f);
      for (int64_t t = 0; t < n; ++t) {  // the values, weighted: each output adds positions 0, 1, 2, ... in order
        float w = weights[t] / total;
        for (int64_t j = 0; j < D; ++j) out[j] += w * V[t * D + j];
      }
    }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("attend_new_positions", &attend_new_positions, "each row's new position stored in its cache and attended");
}
