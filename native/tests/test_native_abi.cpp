// Tests of the C ABI of libedge_ls_native: argument checks, layouts, and the blend's accumulation.
#include "edge_ls/native.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "check.h"

static void test_version_and_messages() {
  CHECK(edge_ls_abi_version() == EDGE_LS_NATIVE_ABI_VERSION);
  CHECK(std::strcmp(edge_ls_status_message(EDGE_LS_OK), "ok") == 0);
  CHECK(std::strlen(edge_ls_status_message(EDGE_LS_ERR_VALUE)) > 10);
  CHECK(std::strcmp(edge_ls_status_message(12345), "unknown status") == 0);
}

static void test_bad_arguments_are_refused_not_crashed_on() {
  float f[4] = {0, 0, 0, 0};
  const float one[1] = {1.0f}, zero[1] = {0.0f}, nan[1] = {std::numeric_limits<float>::quiet_NaN()};
  const uint8_t px[1] = {7};
  CHECK(edge_ls_preprocess_u8(nullptr, 1, 1, 1, 1, zero, one, zero, one, f) == EDGE_LS_ERR_NULL);
  CHECK(edge_ls_preprocess_u8(px, 1, 1, 1, 0, zero, one, zero, one, f) == EDGE_LS_ERR_SHAPE);
  CHECK(edge_ls_preprocess_u8(px, 1, -1, 1, 1, zero, one, zero, one, f) == EDGE_LS_ERR_SHAPE);
  CHECK(edge_ls_preprocess_u8(px, 1, 1, 1, 1, zero, one, zero, zero, f) == EDGE_LS_ERR_VALUE);  // std 0
  CHECK(edge_ls_preprocess_u8(px, 1, 1, 1, 1, zero, one, nan, one, f) == EDGE_LS_ERR_VALUE);
  CHECK(edge_ls_sigmoid(f, 4, 0.0f, f) == EDGE_LS_ERR_VALUE);
  CHECK(edge_ls_sigmoid(f, -1, 1.0f, f) == EDGE_LS_ERR_SHAPE);
  CHECK(edge_ls_confidence(f, 4, 0.0f, f) == EDGE_LS_ERR_VALUE);
  CHECK(edge_ls_confidence(f, 4, 1.0f, f) == EDGE_LS_ERR_VALUE);
  CHECK(edge_ls_hann_window(0, f) == EDGE_LS_ERR_SHAPE);
  const int32_t origin[2] = {0, 0};
  CHECK(edge_ls_blend_tiles(f, 1, 2, origin, nullptr, 1, -1.0f, nullptr, f, f, 2, 2) == EDGE_LS_ERR_VALUE);
  CHECK(edge_ls_blend_tiles(f, 1, 2, nullptr, nullptr, 1, 1.0f, nullptr, f, f, 2, 2) == EDGE_LS_ERR_NULL);
  CHECK(edge_ls_blend_tiles(f, 1, 0, origin, nullptr, 1, 1.0f, nullptr, f, f, 2, 2) == EDGE_LS_ERR_SHAPE);
  // Probabilities need no temperature: any value is accepted when apply_sigmoid is 0.
  float acc[4] = {0, 0, 0, 0}, ws[4] = {0, 0, 0, 0};
  CHECK(edge_ls_blend_tiles(f, 1, 2, origin, nullptr, 0, 0.0f, nullptr, acc, ws, 2, 2) == EDGE_LS_OK);
}

static void test_preprocess_goes_interleaved_to_planar_per_band() {
  // 2 images of 1 x 2 pixels, 3 bands, interleaved: image, row, column, band.
  const uint8_t src[12] = {0, 10, 255, 51, 20, 0, /* image 1 */ 255, 30, 128, 102, 40, 64};
  const float offset[3] = {0.0f, 10.0f, 0.0f}, scale[3] = {1.0f / 255.0f, 1.0f / 20.0f, 1.0f / 255.0f};
  const float mean[3] = {0.5f, 0.0f, 0.0f}, std_dev[3] = {0.5f, 1.0f, 2.0f};
  float dst[12];
  CHECK(edge_ls_preprocess_u8(src, 2, 1, 2, 3, offset, scale, mean, std_dev, dst) == EDGE_LS_OK);
  // Planar: image 0 band 0 = [(0/255-.5)/.5, (51/255-.5)/.5], band 1 = [0, .5], band 2 = [.5, 0] ...
  const double want[12] = {-1.0, 0.2 * 2 - 1.0, 0.0, 0.5, 0.5, 0.0,
                           1.0,  0.4 * 2 - 1.0, 1.0, 1.0, 128.0 / 255.0 / 2.0, 64.0 / 255.0 / 2.0};
  for (int i = 0; i < 12; ++i) CHECK_NEAR(dst[i], want[i], 1e-6);

  const uint16_t src16[2] = {500, 12000};  // 1 band: the second sample clips at 1
  const float off16[1] = {1000.0f}, sc16[1] = {1.0f / 10000.0f}, m16[1] = {0.0f}, s16[1] = {1.0f};
  float dst16[2];
  CHECK(edge_ls_preprocess_u16(src16, 1, 1, 2, 1, off16, sc16, m16, s16, dst16) == EDGE_LS_OK);
  CHECK(dst16[0] == 0.0f);
  CHECK(dst16[1] == 1.0f);
}

static void test_hann_window_matches_the_formula() {
  std::vector<float> w(10);
  CHECK(edge_ls_hann_window(10, w.data()) == EDGE_LS_OK);
  for (int i = 0; i < 10; ++i) {
    const double s = std::sin(3.14159265358979323846 * (i + 0.5) / 10.0);
    CHECK_NEAR(w[i], s * s, 1e-7);
  }
}

static void test_blend_accumulates_weighted_probabilities_and_resolves_them() {
  // Three 4-px tiles at stride 2 along x on a 4 x 7 canvas: the last one reaches 1 px past it.
  const int size = 4, n = 3;
  const int64_t ch = 4, cw = 7;
  const int32_t origins[6] = {0, 0, 0, 2, 0, 4};
  std::vector<float> tiles(n * size * size);
  for (int t = 0; t < n; ++t)
    for (int i = 0; i < size * size; ++i) tiles[t * size * size + i] = 0.2f + 0.3f * static_cast<float>(t);
  std::vector<float> acc(ch * cw, 0.0f), ws(ch * cw, 0.0f), prob(ch * cw);
  CHECK(edge_ls_blend_tiles(tiles.data(), n, size, origins, nullptr, 0, 1.0f, nullptr, acc.data(), ws.data(),
                            ch, cw) == EDGE_LS_OK);
  std::vector<float> win(size);
  edge_ls_hann_window(size, win.data());
  for (int64_t y = 0; y < ch; ++y)
    for (int64_t x = 0; x < cw; ++x) {
      double a = 0.0, s = 0.0;
      for (int t = 0; t < n; ++t) {
        const int64_t tx = x - origins[2 * t + 1];
        if (tx < 0 || tx >= size) continue;
        const double w = static_cast<double>(win[y]) * win[tx];
        a += w * (0.2 + 0.3 * t);
        s += w;
      }
      CHECK_NEAR(acc[y * cw + x], a, 1e-6);
      CHECK_NEAR(ws[y * cw + x], s, 1e-6);
    }
  CHECK(edge_ls_blend_resolve(acc.data(), ws.data(), ch * cw, prob.data()) == EDGE_LS_OK);
  CHECK_NEAR(prob[0], 0.2, 1e-6);           // only tile 0 covers column 0
  CHECK_NEAR(prob[cw - 1], 0.8, 1e-6);      // only tile 2 covers column 6
  CHECK(prob[3] > 0.2f && prob[3] < 0.8f);  // a mix in the overlaps

  // A second call adds on top (accumulators are never reset), and logits go through the sigmoid.
  const float logit[16] = {0.0f};
  const int32_t origin[2] = {0, 0};
  std::vector<float> acc2(acc), ws2(ws);
  CHECK(edge_ls_blend_tiles(logit, 1, size, origin, nullptr, 1, 2.0f, win.data(), acc2.data(), ws2.data(), ch,
                            cw) == EDGE_LS_OK);
  CHECK_NEAR(acc2[cw + 1] - acc[cw + 1], 0.5 * win[1] * win[1], 1e-7);
  CHECK_NEAR(ws2[cw + 1] - ws[cw + 1], static_cast<double>(win[1]) * win[1], 1e-7);
  CHECK(acc2[cw + 5] == acc[cw + 5]);  // outside the added tile
}

static void test_invalid_pixels_add_nothing() {
  const int size = 2;
  const float tiles[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  const uint8_t valid[4] = {1, 0, 0, 1};
  const int32_t origin[2] = {0, 0};
  float acc[4] = {0, 0, 0, 0}, ws[4] = {0, 0, 0, 0}, prob[4];
  CHECK(edge_ls_blend_tiles(tiles, 1, size, origin, valid, 0, 1.0f, nullptr, acc, ws, 2, 2) == EDGE_LS_OK);
  CHECK(ws[1] == 0.0f && ws[2] == 0.0f && ws[0] > 0.0f && ws[3] > 0.0f);
  edge_ls_blend_resolve(acc, ws, 4, prob);
  CHECK(prob[1] == 0.0f);
  CHECK_NEAR(prob[0], 1.0, 1e-7);
}

static void test_sigmoid_and_confidence_arrays() {
  const float z[3] = {-4.0f, 0.0f, 4.0f};
  float p[3], c[3];
  CHECK(edge_ls_sigmoid(z, 3, 2.0f, p) == EDGE_LS_OK);
  CHECK_NEAR(p[0], 1.0 / (1.0 + std::exp(2.0)), 1e-7);
  CHECK_NEAR(p[1], 0.5, 0.0);
  CHECK(edge_ls_confidence(p, 3, 0.5f, c) == EDGE_LS_OK);
  CHECK_NEAR(c[0], c[2], 1e-6);
  CHECK(c[1] == 0.0f);
}

int main() {
  test_version_and_messages();
  test_bad_arguments_are_refused_not_crashed_on();
  test_preprocess_goes_interleaved_to_planar_per_band();
  test_hann_window_matches_the_formula();
  test_blend_accumulates_weighted_probabilities_and_resolves_them();
  test_invalid_pixels_add_nothing();
  test_sigmoid_and_confidence_arrays();
  return check::report("test_native_abi");
}
