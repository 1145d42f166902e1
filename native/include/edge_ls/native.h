/* C ABI of libedge_ls_native: the host build of the per-pixel math in pixel_math.h.
 *
 * Plain C types only, so Python can call it with ctypes and any language with a C FFI can link
 * it. Every array is C-contiguous; every function checks its arguments and returns an
 * EDGE_LS_STATUS code (0 = success) instead of crashing on a bad call. Nothing allocates, nothing
 * keeps state, every function is thread-safe. See native/README.md for the math and layouts.
 */
#ifndef EDGE_LS_NATIVE_H
#define EDGE_LS_NATIVE_H

#include <stdint.h>

#if defined(_WIN32)
#define EDGE_LS_API __declspec(dllexport)
#else
#define EDGE_LS_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any change of a signature or a layout below. */
#define EDGE_LS_NATIVE_ABI_VERSION 1

enum edge_ls_status {
  EDGE_LS_OK = 0,
  EDGE_LS_ERR_NULL = -1,  /* a required pointer is NULL */
  EDGE_LS_ERR_SHAPE = -2, /* a count or dimension is out of range */
  EDGE_LS_ERR_VALUE = -3  /* a parameter value is out of range (temperature, threshold, std) */
};

EDGE_LS_API int edge_ls_abi_version(void);
/* Static English text for a status code (never NULL). */
EDGE_LS_API const char* edge_ls_status_message(int status);

/* Interleaved n x height x width x bands samples -> planar n x bands x height x width float32:
 * out = (clip((raw - offset[b]) * scale[b], 0, 1) - mean[b]) / std[b]. Each parameter array holds
 * `bands` floats; std must be positive and finite. */
EDGE_LS_API int edge_ls_preprocess_u8(const uint8_t* src, int32_t n, int32_t height, int32_t width,
                                      int32_t bands, const float* offset, const float* scale,
                                      const float* mean, const float* std_dev, float* dst);
EDGE_LS_API int edge_ls_preprocess_u16(const uint16_t* src, int32_t n, int32_t height, int32_t width,
                                       int32_t bands, const float* offset, const float* scale,
                                       const float* mean, const float* std_dev, float* dst);

/* out[i] = sigmoid(z[i] / temperature); temperature must be positive and finite. */
EDGE_LS_API int edge_ls_sigmoid(const float* z, int64_t count, float temperature, float* out);

/* The 1-D Hann window of pixel_math.hann_window: out[i] = sin^2(pi (i + 0.5) / size). */
EDGE_LS_API int edge_ls_hann_window(int32_t size, float* out);

/* Accumulate n_tiles square tiles (n_tiles x tile_size x tile_size) into a canvas_h x canvas_w
 * canvas: accum += w * p and wsum += w, with w = window[ty] * window[tx] and
 * p = apply_sigmoid ? sigmoid(v / temperature) : v. origins holds (y0, x0) per tile in canvas
 * pixels (may be negative or reach past the canvas: those pixels are skipped). valid is an optional
 * n_tiles x tile_size x tile_size mask (0 = skip the pixel; NULL = all valid). window is the Hann
 * window of tile_size samples, or NULL to have it computed here. Tiles are added in order. */
EDGE_LS_API int edge_ls_blend_tiles(const float* tiles, int32_t n_tiles, int32_t tile_size,
                                    const int32_t* origins, const uint8_t* valid, int32_t apply_sigmoid,
                                    float temperature, const float* window, float* accum, float* wsum,
                                    int64_t canvas_h, int64_t canvas_w);

/* prob[i] = wsum[i] > 0 ? clip(accum[i] / wsum[i], 0, 1) : 0. */
EDGE_LS_API int edge_ls_blend_resolve(const float* accum, const float* wsum, int64_t count, float* prob);

/* out[i] = pixel_math.confidence(prob[i], threshold); threshold must be in (0, 1). */
EDGE_LS_API int edge_ls_confidence(const float* prob, int64_t count, float threshold, float* out);

#ifdef __cplusplus
}
#endif

#endif /* EDGE_LS_NATIVE_H */
