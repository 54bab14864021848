// The writing model's float32 products on x86 CPUs with AVX2: y = x Wᵀ + b, a row's bits the same alone or
// among any number of other rows, and the weights read at the speed of memory.
//
// Why by hand: writing a token multiplies one row by every matrix, so the time is reading the weights. Each
// output here is one running sum over the inputs, k = 0, 1, 2, ... in order, whatever the number of rows or
// threads: a row cannot get other bits among others. The weight is packed once so that a block of 32 outputs
// reads as one stream of memory, which the CPU's prefetchers follow at full speed.
//
// Built by PyTorch's C++ extension loader on first use (model/serving/kernels.py); model/serving/products.py
// calls it.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <vector>

constexpr int64_t BLOCK = 32;       // outputs per block: four AVX2 vectors of 8 floats
constexpr int64_t K_CHUNK = 64;     // inputs per pass over a block: 8 KB of weights, in L1 beside 30 rows of inputs
constexpr int ROWS_TOGETHER = 3;    // 3 rows x 4 vectors = 12 running sums in registers (AVX2 has 16)
constexpr int64_t PREFETCH_FROM_GROUPS = 2;  // groups of rows from which the next block is fetched ahead

// (out, in) -> (blocks, in, BLOCK): block b holds outputs 32b .. 32b+31, input by input. Outputs past `out`
// are zero weights, computed and never written.
torch::Tensor pack(torch::Tensor weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.scalar_type() == torch::kFloat32, "pack: a 2-D float32 weight");
  int64_t out = weight.size(0), in = weight.size(1), blocks = (out + BLOCK - 1) / BLOCK;
  auto padded = torch::constant_pad_nd(weight, {0, 0, 0, blocks * BLOCK - out});  // (blocks * BLOCK, in)
  return padded.view({blocks, BLOCK, in}).transpose(1, 2).contiguous();           // (blocks, in, BLOCK)
}

// R rows' running sums for one block over inputs k0 .. k1-1, carried in `sums` (R x BLOCK) between passes.
// Storing a float32 sum and loading it again changes no bit, so passes do not change the order of a sum.
template <int R>
static inline void add_inputs(const float* x, int64_t in, const float* block, int64_t k0, int64_t k1, float* sums) {
  __m256 acc[R][4];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 4; ++v) acc[r][v] = _mm256_loadu_ps(sums + r * BLOCK + 8 * v);
  for (int64_t k = k0; k < k1; ++k) {
    const float* w = block + k * BLOCK;  // input k's weights for the block's 32 outputs
    __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8), w2 = _mm256_loadu_ps(w + 16),
           w3 = _mm256_loadu_ps(w + 24);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      __m256 xk = _mm256_broadcast_ss(x + r * in + k);  // one fused multiply-add per output: sum += x[k] * w[k]
      acc[r][0] = _mm256_fmadd_ps(xk, w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(xk, w1, acc[r][1]);
      acc[r][2] = _mm256_fmadd_ps(xk, w2, acc[r][2]);
      acc[r][3] = _mm256_fmadd_ps(xk, w3, acc[r][3]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < 4; ++v) _mm256_storeu_ps(sums + r * BLOCK + 8 * v, acc[r][v]);
}

// x (rows, in) times the packed weight (blocks, in, BLOCK), plus bias (out) if given: (rows, out).
torch::Tensor linear(torch::Tensor x, torch::Tensor packed, c10::optional<torch::Tensor> bias, int64_t out) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.size(1) == packed.size(1),
              "linear: x must be (rows, ", packed.size(1), ") float32");
  x = x.contiguous();
  int64_t rows = x.size(0), in = x.size(1), blocks = packed.size(0);
  auto y = torch::empty({rows, out}, x.options());
  const float* X = x.data_ptr<float>();
  const float* W = packed.data_ptr<float>();
  torch::Tensor bias_ = bias.has_value() ? bias->contiguous() : torch::Tensor();
  const float* b = bias_.defined() ? bias_.data_ptr<float>() : nullptr;
  float* Y = y.data_ptr<float>();
  // The cores share out blocks of outputs, never a sum: the thread count cannot change a bit either.
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    std::vector<float> sums(rows * BLOCK);
    for (int64_t blk = first; blk < last; ++blk) {
      const float* block = W + blk * in * BLOCK;
      std::fill(sums.begin(), sums.end(), 0.0f);
      // Many rows take long enough over a block for the CPU to wait on memory between blocks: ask for the next
      // block into L2 meanwhile, a few lines before each group of rows. A lone row streams at memory's speed anyway.
      const char* next = reinterpret_cast<const char*>(block + in * BLOCK);
      int64_t groups = rows / ROWS_TOGETHER, chunks = (in + K_CHUNK - 1) / K_CHUNK;
      int64_t lines = blk + 1 < last && groups >= PREFETCH_FROM_GROUPS ? in * BLOCK * 4 / 64 : 0;
      int64_t lines_per_group = lines / std::max<int64_t>(1, chunks * groups) + 1, line = 0;
      for (int64_t k0 = 0; k0 < in; k0 += K_CHUNK) {
        int64_t k1 = std::min(in, k0 + K_CHUNK), r = 0;
        for (; r + ROWS_TOGETHER <= rows; r += ROWS_TOGETHER) {
          for (int64_t end = std::min(lines, line + lines_per_group); line < end; ++line)
            _mm_prefetch(next + 64 * line, _MM_HINT_T1);
          add_inputs<ROWS_TOGETHER>(X + r * in, in, block, k0, k1, sums.data() + r * BLOCK);
        }
        for (; r < rows; ++r)  // the same sums, a row at a time
          add_inputs<1>(X + r * in, in, block, k0, k1, sums.data() + r * BLOCK);
      }
      int64_t o0 = blk * BLOCK, n = std::min(BLOCK, out - o0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j) Y[r * out + o0 + j] = sums[r * BLOCK + j] + (b ? b[o0 + j] : 0.0f);
    }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("pack", &pack, "a weight (out, in) packed in blocks of 32 outputs");
  m.def("linear", &linear, "x times a packed weight, plus bias");
}
