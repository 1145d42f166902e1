// Host build of the per-pixel math: plain loops over the functions of pixel_math.h, behind the C
// ABI of native.h. The loops use the same index helpers as the CUDA kernels, so the ctest and the
// pytest cross-check exercise the kernels' index math too (everything but the launch itself).
#include "edge_ls/native.h"

#include <cmath>
#include <vector>

#include "edge_ls/pixel_math.h"

namespace {

bool positive_finite(float v) { return std::isfinite(v) && v > 0.0f; }

template <typename Raw>
int preprocess(const Raw* src, int32_t n, int32_t height, int32_t width, int32_t bands,
               const float* offset, const float* scale, const float* mean, const float* std_dev,
               float* dst) {
  if (!src || !offset || !scale || !mean || !std_dev || !dst) return EDGE_LS_ERR_NULL;
  if (n < 0 || height < 0 || width < 0 || bands < 1) return EDGE_LS_ERR_SHAPE;
  for (int32_t b = 0; b < bands; ++b) {
    if (!positive_finite(std_dev[b]) || !std::isfinite(offset[b]) || !std::isfinite(scale[b]) ||
        !std::isfinite(mean[b]))
      return EDGE_LS_ERR_VALUE;
  }
  const int64_t plane = static_cast<int64_t>(height) * width;
  const int64_t total = plane * bands * n;
  for (int64_t i = 0; i < total; ++i) {
    const edge_ls::PlanarSource s = edge_ls::planar_source(i, plane, bands);
    const int b = s.band;
    dst[i] = edge_ls::preprocess_value(static_cast<float>(src[s.source]), offset[b], scale[b], mean[b],
                                       std_dev[b]);
  }
  return EDGE_LS_OK;
}

}  // namespace

extern "C" {

int edge_ls_abi_version(void) { return EDGE_LS_NATIVE_ABI_VERSION; }

const char* edge_ls_status_message(int status) {
  switch (status) {
    case EDGE_LS_OK:
      return "ok";
    case EDGE_LS_ERR_NULL:
      return "a required pointer is NULL";
    case EDGE_LS_ERR_SHAPE:
      return "a count or dimension is out of range";
    case EDGE_LS_ERR_VALUE:
      return "a parameter value is out of range (temperature > 0, 0 < threshold < 1, std > 0, finite)";
    default:
      return "unknown status";
  }
}

int edge_ls_preprocess_u8(const uint8_t* src, int32_t n, int32_t height, int32_t width, int32_t bands,
                          const float* offset, const float* scale, const float* mean,
                          const float* std_dev, float* dst) {
  return preprocess(src, n, height, width, bands, offset, scale, mean, std_dev, dst);
}

int edge_ls_preprocess_u16(const uint16_t* src, int32_t n, int32_t height, int32_t width, int32_t bands,
                           const float* offset, const float* scale, const float* mean,
                           const float* std_dev, float* dst) {
  return preprocess(src, n, height, width, bands, offset, scale, mean, std_dev, dst);
}

int edge_ls_sigmoid(const float* z, int64_t count, float temperature, float* out) {
  if (!z || !out) return EDGE_LS_ERR_NULL;
  if (count < 0) return EDGE_LS_ERR_SHAPE;
  if (!positive_finite(temperature)) return EDGE_LS_ERR_VALUE;
  for (int64_t i = 0; i < count; ++i) out[i] = edge_ls::sigmoid(z[i], temperature);
  return EDGE_LS_OK;
}

int edge_ls_hann_window(int32_t size, float* out) {
  if (!out) return EDGE_LS_ERR_NULL;
  if (size < 1) return EDGE_LS_ERR_SHAPE;
  for (int32_t i = 0; i < size; ++i) out[i] = edge_ls::hann(i, size);
  return EDGE_LS_OK;
}

int edge_ls_blend_tiles(const float* tiles, int32_t n_tiles, int32_t tile_size, const int32_t* origins,
                        const uint8_t* valid, int32_t apply_sigmoid, float temperature,
                        const float* window, float* accum, float* wsum, int64_t canvas_h,
                        int64_t canvas_w) {
  if (!tiles || !origins || !accum || !wsum) return EDGE_LS_ERR_NULL;
  if (n_tiles < 0 || tile_size < 1 || canvas_h < 0 || canvas_w < 0) return EDGE_LS_ERR_SHAPE;
  if (apply_sigmoid && !positive_finite(temperature)) return EDGE_LS_ERR_VALUE;
  std::vector<float> own_window;
  if (!window) {
    own_window.resize(static_cast<size_t>(tile_size));
    edge_ls_hann_window(tile_size, own_window.data());
    window = own_window.data();
  }
  const int64_t total = static_cast<int64_t>(n_tiles) * tile_size * tile_size;
  edge_ls::BlendTarget t{};
  for (int64_t i = 0; i < total; ++i) {
    if (!edge_ls::blend_target(i, tile_size, origins, valid, canvas_h, canvas_w, &t)) continue;
    const float w = edge_ls::blend_weight(window, t.ty, t.tx);
    const float p = edge_ls::tile_probability(tiles[i], apply_sigmoid, temperature);
    accum[t.canvas_index] += w * p;
    wsum[t.canvas_index] += w;
  }
  return EDGE_LS_OK;
}

int edge_ls_blend_resolve(const float* accum, const float* wsum, int64_t count, float* prob) {
  if (!accum || !wsum || !prob) return EDGE_LS_ERR_NULL;
  if (count < 0) return EDGE_LS_ERR_SHAPE;
  for (int64_t i = 0; i < count; ++i) prob[i] = edge_ls::blend_resolve(accum[i], wsum[i]);
  return EDGE_LS_OK;
}

int edge_ls_confidence(const float* prob, int64_t count, float threshold, float* out) {
  if (!prob || !out) return EDGE_LS_ERR_NULL;
  if (count < 0) return EDGE_LS_ERR_SHAPE;
  if (!(threshold > 0.0f && threshold < 1.0f)) return EDGE_LS_ERR_VALUE;
  for (int64_t i = 0; i < count; ++i) out[i] = edge_ls::confidence(prob[i], threshold);
  return EDGE_LS_OK;
}

}  // extern "C"
