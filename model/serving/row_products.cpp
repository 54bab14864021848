// The writing model's products on x86 CPUs with AVX2: y = x Wᵀ + b (then GELU, or a residual added, if asked), in
// float32 or bfloat16, a row's bits the same alone or among any number of other rows, and the weights read at the
// speed of memory.
//
// Why by hand: writing a token multiplies one row by every matrix, so the time is reading the weights. Each
// output here is one running sum over the inputs, k = 0, 1, 2, ... in order, whatever the number of rows or
// threads: a row cannot get other bits among others. The weight is packed once so that a block of 32 outputs
// reads as one stream of memory, which the CPU's prefetchers follow at full speed. In bfloat16 the weights are
// half the bytes to read; every sum is still float32, and only the outputs are rounded to bfloat16, as a
// bfloat16 nn.Linear does. AVX2 has no bfloat16 arithmetic and needs none: a bfloat16 is the top half of a float32.
//
// Part of the writer's kernels (model/serving/kernels.h); model/serving/products.py calls it.
#include "kernels.h"
#include "work_sharing.h"

#include <immintrin.h>
#include <sleef.h>

#include <algorithm>
#include <type_traits>
#include <vector>

constexpr int64_t BLOCK = 32;       // outputs per block: four AVX2 vectors of 8 floats
constexpr int64_t K_CHUNK = 64;     // inputs per pass over a block: 8 KB of weights, in L1 beside 30 rows of inputs
constexpr int ROWS_TOGETHER = 3;    // 3 rows x 4 vectors = 12 running sums in registers (AVX2 has 16)
constexpr int64_t PREFETCH_FROM_GROUPS = 2;  // groups of rows from which the next block is fetched ahead

using c10::BFloat16;

// (out, in) -> (blocks, in, BLOCK): block b holds outputs 32b .. 32b+31, input by input. Outputs past `out`
// are zero weights, computed and never written. In bfloat16 each 16 outputs are stored interleaved, 0 8 1 9 ..
// 7 15, for `load` below.
torch::Tensor pack(torch::Tensor weight) {
  auto type = weight.scalar_type();
  TORCH_CHECK(weight.dim() == 2 && (type == torch::kFloat32 || type == torch::kBFloat16),
              "pack: a 2-D float32 or bfloat16 weight");
  int64_t out = weight.size(0), in = weight.size(1), blocks = (out + BLOCK - 1) / BLOCK;
  auto padded = torch::constant_pad_nd(weight, {0, 0, 0, blocks * BLOCK - out});  // (blocks * BLOCK, in)
  auto packed = padded.view({blocks, BLOCK, in}).transpose(1, 2);                  // (blocks, in, BLOCK)
  if (type == torch::kBFloat16)  // (.., 2 halves of 16, 2, 8) -> (.., 2 halves, 8, 2)
    packed = packed.reshape({blocks, in, BLOCK / 16, 2, 8}).transpose(3, 4);
  return packed.contiguous().view({blocks, in, BLOCK});
}

// 32 weights of one input as four vectors of 8 float32: as they are, or widened from bfloat16 exactly (a bfloat16
// is the top half of the float32 it stands for). Two interleaved bfloat16 share 32 bits, the first in the low half:
// shifted up 16 bits it is outputs 0 .. 7's float32, its top half kept is outputs 8 .. 15's.
static inline void load(const float* w, __m256 v[4]) {
  for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(w + 8 * i);
}
static inline void load(const BFloat16* w, __m256 v[4]) {
  const __m256i top = _mm256_set1_epi32(int32_t(0xFFFF0000u));
  for (int i = 0; i < 2; ++i) {
    __m256i pairs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16 * i));
    v[2 * i] = _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
    v[2 * i + 1] = _mm256_castsi256_ps(_mm256_and_si256(pairs, top));
  }
}

// R rows' running sums for B neighbouring blocks over n inputs: x points at the first row's first of them (rows are
// `in` apart), w at the first block's weights (n, BLOCK), the next block's `stride` further. The sums (R, B, BLOCK)
// are carried in `sums` from pass to pass: storing a float32 sum and loading it again changes no bit, so passes do
// not change the order of a sum, and neither does B: each output is still one running sum, k = 0, 1, 2, ...
template <int R, int B, typename T>
static inline void add_inputs(const float* x, int64_t in, const T* w, int64_t stride, int64_t n, float* sums) {
  __m256 acc[R][B][4];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < B; ++b)
      for (int v = 0; v < 4; ++v) acc[r][b][v] = _mm256_loadu_ps(sums + (r * B + b) * BLOCK + 8 * v);
  for (int64_t k = 0; k < n; ++k, w += BLOCK) {  // w: input k's weights for the first block's 32 outputs
#pragma GCC unroll 8
    for (int b = 0; b < B; ++b) {
      __m256 wk[4];
      load(w + b * stride, wk);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        __m256 xk = _mm256_broadcast_ss(x + r * in + k);  // one fused multiply-add per output: sum += x[k] * w[k]
        for (int v = 0; v < 4; ++v) acc[r][b][v] = _mm256_fmadd_ps(xk, wk[v], acc[r][b][v]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
    for (int b = 0; b < B; ++b)
      for (int v = 0; v < 4; ++v) _mm256_storeu_ps(sums + (r * B + b) * BLOCK + 8 * v, acc[r][b][v]);
}

// n inputs' weights of a block (n, BLOCK) widened to float32 into `buffer`, once for all the rows.
template <typename T>
static inline const float* widen(const T* w, int64_t n, float* buffer) {
  __m256 v[4];
  for (int64_t k = 0; k < n; ++k) {
    load(w + k * BLOCK, v);
    for (int i = 0; i < 4; ++i) _mm256_storeu_ps(buffer + k * BLOCK + 8 * i, v[i]);
  }
  return buffer;
}

// All the rows' sums for one block over inputs k0 .. k0+n-1, whose weights w (n, BLOCK) are in W's type.
// `prefetch()` asks for a share of the next block, called ahead of each group of rows.
template <typename W, typename Prefetch>
static inline void add_rows(const float* X, int64_t rows, int64_t in, int64_t k0, const W* w, int64_t n,
                            float* sums, Prefetch prefetch) {
  int64_t r = 0;
  for (; r + ROWS_TOGETHER <= rows; r += ROWS_TOGETHER) {
    prefetch();
    add_inputs<ROWS_TOGETHER, 1>(X + r * in + k0, in, w, 0, n, sums + r * BLOCK);
  }
  for (; r < rows; ++r)  // the same sums, a row at a time
    add_inputs<1, 1>(X + r * in + k0, in, w, 0, n, sums + r * BLOCK);
}

// GELU with the tanh approximation GPT-2 was trained with, on 8 outputs, as PyTorch's nn.GELU(approximate="tanh")
// computes it, with the same vectorised tanh (SLEEF's, inside PyTorch).
static inline __m256 gelu_tanh(__m256 x) {
  const __m256 beta = _mm256_set1_ps(float(M_SQRT2 * M_2_SQRTPI * 0.5)), kappa = _mm256_set1_ps(0.044715f);
  const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  __m256 cube = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  __m256 inner = _mm256_mul_ps(beta, _mm256_add_ps(x, _mm256_mul_ps(kappa, cube)));  // √(2/π) (x + 0.044715 x³)
  return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, Sleef_tanhf8_u10(inner)));
}

// Y (rows, out) = R + act(X (rows, in) times the packed W (blocks, in, BLOCK) plus b (out)): b and R (rows, out) if
// given, act GELU if asked (the MLP's first product: its outputs go nowhere else); W, b, R and Y in T.
template <typename T>
static void multiply(const float* X, const T* W, const T* b, const T* R, T* Y, int64_t rows, int64_t in, int64_t out,
                     bool gelu) {
  int64_t blocks = (out + BLOCK - 1) / BLOCK;
  // bfloat16 weights read by many rows are widened once into float32 (each row would widen them again); a lone
  // row or two widen them on the fly, in registers.
  bool widen_once = !std::is_same<T, float>::value && rows >= ROWS_TOGETHER;
  // A lone row's 4 sums a block each wait for their last multiply-add to end before the next one: 2 blocks at a
  // time keep 8 under way.
  int64_t together = rows == 1 ? 2 : 1;
  // The cores share out blocks of outputs, never a sum: the thread count cannot change a bit either.
  Chunks shared(blocks, together);
  on_every_core(shared, [&](Chunks& work) {
    std::vector<float> sums(rows * together * BLOCK), chunk(widen_once ? K_CHUNK * BLOCK : 0);
    for (int64_t first, last; work.take(first, last);) {
      for (int64_t blk = first, group; blk < last; blk += group) {
        group = std::min(together, last - blk);  // blocks done at once
        const T* block = W + blk * in * BLOCK;
        std::fill(sums.begin(), sums.end(), 0.0f);
        // Many rows take long enough over a block for the CPU to wait on memory between blocks: ask for the next
        // block into L2 meanwhile, a few lines before each group of rows. A lone row streams at memory's speed anyway.
        const char* next = reinterpret_cast<const char*>(block + in * BLOCK);
        int64_t groups = rows / ROWS_TOGETHER, chunks = (in + K_CHUNK - 1) / K_CHUNK;
        int64_t lines = blk + 1 < blocks && groups >= PREFETCH_FROM_GROUPS ? in * BLOCK * int64_t(sizeof(T)) / 64 : 0;
        int64_t lines_per_group = lines / std::max<int64_t>(1, chunks * groups) + 1, line = 0;
        auto prefetch = [&] {
          for (int64_t end = std::min(lines, line + lines_per_group); line < end; ++line)
            _mm_prefetch(next + 64 * line, _MM_HINT_T1);
        };
        for (int64_t k0 = 0; k0 < in; k0 += K_CHUNK) {
          int64_t n = std::min(in - k0, K_CHUNK);
          if (group == 2)
            add_inputs<1, 2>(X + k0, in, block + k0 * BLOCK, in * BLOCK, n, sums.data());
          else if (widen_once)
            add_rows(X, rows, in, k0, widen(block + k0 * BLOCK, n, chunk.data()), n, sums.data(), prefetch);
          else
            add_rows(X, rows, in, k0, block + k0 * BLOCK, n, sums.data(), prefetch);
        }
        for (int64_t g = 0; g < group; ++g) {
          int64_t o0 = (blk + g) * BLOCK, n = std::min(BLOCK, out - o0);
          for (int64_t r = 0; r < rows; ++r) {
            float* y = sums.data() + (r * group + g) * BLOCK;
            for (int64_t j = 0; j < n; ++j) y[j] += b ? float(b[o0 + j]) : 0.0f;
            if (gelu)
              for (int v = 0; v < 4; ++v) _mm256_storeu_ps(y + 8 * v, gelu_tanh(_mm256_loadu_ps(y + 8 * v)));
            if (R)  // the residual stream, added in float32 and rounded once
              for (int64_t j = 0; j < n; ++j) y[j] += float(R[r * out + o0 + j]);
            std::copy(y, y + n, Y + r * out + o0);  // T(float): bfloat16 rounds to nearest even, as PyTorch's casts do
          }
        }
      }
    }
  });
}

// residual + act(x (rows, in) times the packed weight (blocks, in, BLOCK), plus bias (out)): bias and residual
// (rows, out) if given, act GELU if `gelu`: (rows, out), in x's type.
torch::Tensor linear(torch::Tensor x, torch::Tensor packed, c10::optional<torch::Tensor> bias, int64_t out, bool gelu,
                     c10::optional<torch::Tensor> residual) {
  auto type = packed.scalar_type();
  TORCH_CHECK(x.dim() == 2 && x.size(1) == packed.size(1) && x.scalar_type() == type,
              "linear: x must be (rows, ", packed.size(1), ") in the packed weight's type, ", type);
  TORCH_CHECK(!bias.has_value() || (bias->scalar_type() == type && bias->numel() == out),
              "linear: the bias must be (", out, ") ", type);
  TORCH_CHECK(!residual.has_value() || (residual->scalar_type() == type && residual->numel() == x.size(0) * out),
              "linear: the residual must be (", x.size(0), ", ", out, ") ", type);
  int64_t rows = x.size(0), in = x.size(1);
  x = x.contiguous();
  auto b = bias.has_value() ? bias->contiguous() : torch::Tensor();
  auto r = residual.has_value() ? residual->contiguous() : torch::Tensor();
  auto y = torch::empty({rows, out}, x.options());
  if (type == torch::kFloat32) {
    multiply(x.data_ptr<float>(), packed.data_ptr<float>(), b.defined() ? b.data_ptr<float>() : nullptr,
             r.defined() ? r.data_ptr<float>() : nullptr, y.data_ptr<float>(), rows, in, out, gelu);
  } else {
    const BFloat16* x_ = x.data_ptr<BFloat16>();
    std::vector<float> X(x_, x_ + rows * in);  // the inputs as float32, exactly: read by every block
    multiply(X.data(), packed.data_ptr<BFloat16>(), b.defined() ? b.data_ptr<BFloat16>() : nullptr,
             r.defined() ? r.data_ptr<BFloat16>() : nullptr, y.data_ptr<BFloat16>(), rows, in, out, gelu);
  }
  return y;
}
