// CUDA kernels for on-device pre- and post-processing, compiled into edge_ls_kernels.fatbin.
//
// Every kernel is extern "C" (unmangled, so pycuda's module.get_function finds it by name), takes
// its arguments in the same order as the host function of native.h with the same name, and uses a
// grid-stride loop: any 1-D launch covers the whole range (suggested: block 256, grid
// min(ceil(count / 256), 4096)). The math and the index math are the functions of pixel_math.h,
// the ones the host library runs and the tests check; only the launch and the atomics are CUDA's.
#include <cuda_fp16.h>
#include <stdint.h>

#include "edge_ls/pixel_math.h"

namespace {

__device__ __forceinline__ float load(float v) { return v; }
__device__ __forceinline__ float load(__half v) { return __half2float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }

__device__ __forceinline__ long long first_index() {
  return static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long grid_stride() {
  return static_cast<long long>(blockDim.x) * gridDim.x;
}

template <typename Raw, typename Out>
__device__ void preprocess(const Raw* src, int n, int height, int width, int bands, const float* offset,
                           const float* scale, const float* mean, const float* std_dev, Out* dst) {
  const long long plane = static_cast<long long>(height) * width;
  const long long total = plane * bands * n;
  for (long long i = first_index(); i < total; i += grid_stride()) {
    const edge_ls::PlanarSource s = edge_ls::planar_source(i, plane, bands);
    const int b = s.band;
    store(dst + i, edge_ls::preprocess_value(static_cast<float>(src[s.source]), offset[b], scale[b],
                                             mean[b], std_dev[b]));
  }
}

template <typename In>
__device__ void blend_tiles(const In* tiles, int n_tiles, int tile_size, const int32_t* origins,
                            const uint8_t* valid, int apply_sigmoid, float temperature, const float* window,
                            float* accum, float* wsum, long long canvas_h, long long canvas_w) {
  const long long total = static_cast<long long>(n_tiles) * tile_size * tile_size;
  edge_ls::BlendTarget t{};
  for (long long i = first_index(); i < total; i += grid_stride()) {
    if (!edge_ls::blend_target(i, tile_size, origins, valid, canvas_h, canvas_w, &t)) continue;
    const float w = edge_ls::blend_weight(window, t.ty, t.tx);
    const float p = edge_ls::tile_probability(load(tiles[i]), apply_sigmoid, temperature);
    // Tiles of one launch overlap on the canvas: their sums meet here in an unspecified order.
    atomicAdd(accum + t.canvas_index, w * p);
    atomicAdd(wsum + t.canvas_index, w);
  }
}

}  // namespace

#define EDGE_LS_PREPROCESS_KERNEL(NAME, RAW, OUT)                                                     \
  extern "C" __global__ void NAME(const RAW* src, int n, int height, int width, int bands,            \
                                  const float* offset, const float* scale, const float* mean,         \
                                  const float* std_dev, OUT* dst) {                                   \
    preprocess(src, n, height, width, bands, offset, scale, mean, std_dev, dst);                     \
  }

EDGE_LS_PREPROCESS_KERNEL(edge_ls_preprocess_u8_f32, uint8_t, float)
EDGE_LS_PREPROCESS_KERNEL(edge_ls_preprocess_u8_f16, uint8_t, __half)
EDGE_LS_PREPROCESS_KERNEL(edge_ls_preprocess_u16_f32, uint16_t, float)
EDGE_LS_PREPROCESS_KERNEL(edge_ls_preprocess_u16_f16, uint16_t, __half)

extern "C" __global__ void edge_ls_sigmoid(const float* z, long long count, float temperature, float* out) {
  for (long long i = first_index(); i < count; i += grid_stride()) out[i] = edge_ls::sigmoid(z[i], temperature);
}

extern "C" __global__ void edge_ls_hann_window(int size, float* out) {
  for (long long i = first_index(); i < size; i += grid_stride()) {
    out[i] = edge_ls::hann(static_cast<int>(i), size);
  }
}

extern "C" __global__ void edge_ls_blend_tiles_f32(const float* tiles, int n_tiles, int tile_size,
                                                   const int32_t* origins, const uint8_t* valid,
                                                   int apply_sigmoid, float temperature, const float* window,
                                                   float* accum, float* wsum, long long canvas_h,
                                                   long long canvas_w) {
  blend_tiles(tiles, n_tiles, tile_size, origins, valid, apply_sigmoid, temperature, window, accum, wsum,
              canvas_h, canvas_w);
}

extern "C" __global__ void edge_ls_blend_tiles_f16(const __half* tiles, int n_tiles, int tile_size,
                                                   const int32_t* origins, const uint8_t* valid,
                                                   int apply_sigmoid, float temperature, const float* window,
                                                   float* accum, float* wsum, long long canvas_h,
                                                   long long canvas_w) {
  blend_tiles(tiles, n_tiles, tile_size, origins, valid, apply_sigmoid, temperature, window, accum, wsum,
              canvas_h, canvas_w);
}

extern "C" __global__ void edge_ls_blend_resolve(const float* accum, const float* wsum, long long count,
                                                 float* prob) {
  for (long long i = first_index(); i < count; i += grid_stride()) {
    prob[i] = edge_ls::blend_resolve(accum[i], wsum[i]);
  }
}

extern "C" __global__ void edge_ls_confidence(const float* prob, long long count, float threshold, float* out) {
  for (long long i = first_index(); i < count; i += grid_stride()) {
    out[i] = edge_ls::confidence(prob[i], threshold);
  }
}
