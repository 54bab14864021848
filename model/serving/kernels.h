// The writer's own C++ kernels, as one compiled module (model/serving/kernels.py builds it, kernels.cpp binds it):
// the products (row_products.cpp), the attention for a written token (row_attention.cpp), and a written token's
// whole layer made of them (written_token.cpp). Each gives a row the same bits alone or among other rows, and shares
// its work between the cores in chunks (work_sharing.h).
#pragma once
#include <torch/extension.h>

#include <vector>

// A weight (out, in) packed in blocks of 32 outputs, for `linear`.
torch::Tensor pack(torch::Tensor weight);

// residual + act(x Wᵀ + b) for rows x (rows, in) and a packed W; act is GELU if `gelu`, else nothing.
torch::Tensor linear(torch::Tensor x, torch::Tensor packed, c10::optional<torch::Tensor> bias, int64_t out, bool gelu,
                     c10::optional<torch::Tensor> residual);

// Each row's new key and value stored in its own cache, then its query attending over that cache's positions.
torch::Tensor attend_new_positions(torch::Tensor qkv, const std::vector<torch::Tensor>& keys,
                                   const std::vector<torch::Tensor>& values, int64_t layer,
                                   const std::vector<int64_t>& positions, int64_t n_head);

// One layer of the course's Block for a written token, every row at once.
torch::Tensor written_token_layer(torch::Tensor x, const std::vector<torch::Tensor>& params, double eps,
                                  const std::vector<torch::Tensor>& keys, const std::vector<torch::Tensor>& values,
                                  int64_t layer, const std::vector<int64_t>& positions, int64_t n_head);
