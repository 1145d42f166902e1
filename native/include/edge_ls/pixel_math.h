// Per-pixel math of edge-ls, shared by the host library (plain C++) and the CUDA kernels.
//
// Twin of edge_ls/pixel_math.py: every formula here is written in the same order of float32
// operations as the numpy reference, so host, device and numpy agree to a float32 ulp or two
// (tests/test_native.py checks that on real imagery). Keep both sides identical when editing.
//
// Compiled three ways: by g++/clang++ for the host library (EDGE_LS_HD = inline), by nvcc for
// the kernels (EDGE_LS_HD = __host__ __device__ inline), and by the ctest unit tests. It must not
// include any CUDA header so the host build needs no CUDA toolkit.
//
// Build rules that keep the agreement (set in native/CMakeLists.txt): no fast-math anywhere, no FMA
// contraction (-ffp-contract=off on the host, --fmad=false on the device), IEEE division on the
// device (nvcc's default -prec-div=true).
#ifndef EDGE_LS_PIXEL_MATH_H
#define EDGE_LS_PIXEL_MATH_H

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define EDGE_LS_HD __host__ __device__ __forceinline__
#else
#define EDGE_LS_HD inline
#endif

namespace edge_ls {

// Offset of the Hann window samples (pixel_math.HANN_OFFSET): the window never reaches 0, so a
// pixel covered by a single tile still has a weight.
constexpr double kHannOffset = 0.5;
constexpr double kPi = 3.14159265358979323846;

// np.clip(v, 0, 1) including its NaN behaviour (NaN stays NaN).
EDGE_LS_HD float clamp01(float v) { return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }

// pixel_math.to_unit_range: clip((raw - offset) * scale, 0, 1).
EDGE_LS_HD float to_unit_range(float raw, float offset, float scale) {
  return clamp01((raw - offset) * scale);
}

// pixel_math.normalize: (unit - mean) / std. A true division, as numpy does (not * 1/std).
EDGE_LS_HD float normalize(float unit, float mean, float std_dev) { return (unit - mean) / std_dev; }

// The model input value of one raw sample: to_unit_range then normalize.
EDGE_LS_HD float preprocess_value(float raw, float offset, float scale, float mean, float std_dev) {
  return normalize(to_unit_range(raw, offset, scale), mean, std_dev);
}

// pixel_math.sigmoid: temperature-scaled logistic, split at 0 so exp never overflows.
EDGE_LS_HD float sigmoid(float logit, float temperature) {
  const float z = logit / temperature;
  if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
  const float ez = expf(z);
  return ez / (1.0f + ez);
}

// pixel_math.hann_window sample i of a window of `size`: sin^2(pi (i + 0.5) / size), computed in
// double and rounded to float32 once, like the numpy reference.
EDGE_LS_HD float hann(int i, int size) {
  const double s = sin(kPi * (static_cast<double>(i) + kHannOffset) / static_cast<double>(size));
  return static_cast<float>(s * s);
}

// pixel_math.blend_weights[ty, tx]: the outer product of the 1-D window, as a float32 product.
EDGE_LS_HD float blend_weight(const float* window, int ty, int tx) { return window[ty] * window[tx]; }

// pixel_math.confidence: distance from the threshold, each side scaled to [0, 1] separately.
EDGE_LS_HD float confidence(float prob, float threshold) {
  const float above = (prob - threshold) / (1.0f - threshold);
  const float below = (threshold - prob) / threshold;
  return clamp01(prob >= threshold ? above : below);
}

// Blended probability of a canvas pixel from its accumulators; 0 where no tile contributed
// (callers take wsum > 0 as the valid mask).
EDGE_LS_HD float blend_resolve(float accum, float wsum) {
  return wsum > 0.0f ? clamp01(accum / wsum) : 0.0f;
}

// ---- Index math shared by the host loops and the kernels (one output element per call) ----

// Element i of a planar N x C x H x W output reads interleaved N x H x W x C sample `source`,
// normalized with the parameters of `band`.
struct PlanarSource {
  int64_t source;
  int band;
};

EDGE_LS_HD PlanarSource planar_source(int64_t i, int64_t plane, int bands) {
  const int64_t image = i / (plane * bands);
  const int64_t rest = i - image * plane * bands;
  const int band = static_cast<int>(rest / plane);
  const int64_t pixel = rest - static_cast<int64_t>(band) * plane;
  return PlanarSource{(image * plane + pixel) * bands + band, band};
}

// Contribution of tile pixel i (of N tiles of tile_size^2, origins as y0,x0 pairs in canvas
// pixels, possibly negative or past the canvas) to the canvas: false when it falls outside the
// canvas or is marked invalid (valid may be null: all valid).
struct BlendTarget {
  int64_t canvas_index;
  int ty;
  int tx;
};

EDGE_LS_HD bool blend_target(int64_t i, int tile_size, const int32_t* origins, const uint8_t* valid,
                             int64_t canvas_h, int64_t canvas_w, BlendTarget* out) {
  const int64_t area = static_cast<int64_t>(tile_size) * tile_size;
  const int64_t tile = i / area;
  const int64_t in_tile = i - tile * area;
  const int ty = static_cast<int>(in_tile / tile_size);
  const int tx = static_cast<int>(in_tile - static_cast<int64_t>(ty) * tile_size);
  const int64_t y = static_cast<int64_t>(origins[2 * tile]) + ty;
  const int64_t x = static_cast<int64_t>(origins[2 * tile + 1]) + tx;
  if (y < 0 || y >= canvas_h || x < 0 || x >= canvas_w) return false;
  if (valid != nullptr && valid[i] == 0) return false;
  out->canvas_index = y * canvas_w + x;
  out->ty = ty;
  out->tx = tx;
  return true;
}

// Probability of a tile pixel: sigmoid(v / T) for logits, v itself for graphs ending in a sigmoid.
EDGE_LS_HD float tile_probability(float value, int apply_sigmoid, float temperature) {
  return apply_sigmoid ? sigmoid(value, temperature) : value;
}

}  // namespace edge_ls

#endif  // EDGE_LS_PIXEL_MATH_H
