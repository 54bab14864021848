// One layer of the course's GPT for a written token, every row at once, in one call: the same function as the
// course's Block (model/gpt.py),
//
//     x = x + attn(ln_1(x))
//     x = x + mlp(ln_2(x))
//
// made of the writer's kernels: the products (row_products.cpp, the MLP's GELU and each residual add at their
// end), the attention over each row's own cache (row_attention.cpp), and LayerNorm, here.
//
// Why by hand: writing, each row reads one new position, and the course's Block makes a dozen PyTorch calls a
// layer for it, each with Python between: a sixth of a lone token's time on the CPU, beside products that read
// every weight at the speed of memory. Here a layer is one call. Each row is normalised on its own, in one
// fixed order, so a row's bits are still the same alone or among others.
//
// Part of the writer's kernels (model/serving/kernels.h); model/serving/written_token.py calls it.
#include "kernels.h"

#include <cmath>

// LayerNorm of each row of x (rows, C): (x - mean) / √(variance + eps) · weight + bias, in float32, as
// nn.LayerNorm computes it (the variance without Bessel's correction); the result in T.
template <typename T>
static void normalize(const T* x, const T* weight, const T* bias, float eps, T* y, int64_t rows, int64_t C) {
  for (int64_t r = 0; r < rows; ++r, x += C, y += C) {
    float sum = 0.0f, squares = 0.0f;
    for (int64_t j = 0; j < C; ++j) sum += float(x[j]);
    float mean = sum / C;
    for (int64_t j = 0; j < C; ++j) squares += (float(x[j]) - mean) * (float(x[j]) - mean);
    float scale = 1.0f / std::sqrt(squares / C + eps);
    for (int64_t j = 0; j < C; ++j) y[j] = T((float(x[j]) - mean) * scale * float(weight[j]) + float(bias[j]));
  }
}

static torch::Tensor layer_norm(torch::Tensor x, const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
  auto y = torch::empty_like(x);
  int64_t rows = x.size(0), C = x.size(1);
  if (x.scalar_type() == torch::kFloat32)
    normalize(x.data_ptr<float>(), weight.data_ptr<float>(), bias.data_ptr<float>(), float(eps), y.data_ptr<float>(),
              rows, C);
  else
    normalize(x.data_ptr<c10::BFloat16>(), weight.data_ptr<c10::BFloat16>(), bias.data_ptr<c10::BFloat16>(),
              float(eps), y.data_ptr<c10::BFloat16>(), rows, C);
  return y;
}

// x (rows, 1, C): each row's residual stream at its new position. params, as model/serving/written_token.py lists
// them: ln_1's weight and bias; attn.c_attn's packed weight and bias; attn.c_proj's; ln_2's; mlp.c_fc's;
// mlp.c_proj's. The caches as attend_new_positions takes them. Returns (rows, 1, C), the layer's output.
torch::Tensor written_token_layer(torch::Tensor x, const std::vector<torch::Tensor>& params, double eps,
                                  const std::vector<torch::Tensor>& keys, const std::vector<torch::Tensor>& values,
                                  int64_t layer, const std::vector<int64_t>& positions, int64_t n_head) {
  TORCH_CHECK(x.dim() == 3 && x.size(1) == 1 && params.size() == 12, "written_token_layer: x must be (rows, 1, C), "
              "with 12 parameters");
  for (const auto& p : params)
    TORCH_CHECK(p.is_contiguous() && p.scalar_type() == x.scalar_type(), "written_token_layer: every parameter "
                "must be contiguous, in x's type");
  int64_t rows = x.size(0), C = x.size(2);
  const auto &ln_1_w = params[0], &ln_1_b = params[1], &c_attn = params[2], &c_attn_b = params[3];
  const auto &attn_proj = params[4], &attn_proj_b = params[5], &ln_2_w = params[6], &ln_2_b = params[7];
  const auto &c_fc = params[8], &c_fc_b = params[9], &mlp_proj = params[10], &mlp_proj_b = params[11];
  auto residual = x.reshape({rows, C}).contiguous();  // (rows, 1, C) -> (rows, C): one position a row
  auto qkv = linear(layer_norm(residual, ln_1_w, ln_1_b, eps), c_attn, c_attn_b, c_attn_b.numel(), false, {});
  auto heads = attend_new_positions(qkv.view({rows, 1, 3 * C}), keys, values, layer, positions, n_head);
  residual = linear(heads.view({rows, C}), attn_proj, attn_proj_b, C, false, residual);  // x + attn(ln_1(x))
  auto hidden = linear(layer_norm(residual, ln_2_w, ln_2_b, eps), c_fc, c_fc_b, c_fc_b.numel(), true, {});
  residual = linear(hidden, mlp_proj, mlp_proj_b, C, false, residual);  // x + mlp(ln_2(x)), GELU in c_fc's product
  return residual.view({rows, 1, C});
}
