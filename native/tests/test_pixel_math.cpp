// Unit tests of pixel_math.h compiled as plain C++ (which also proves the header needs no CUDA).
// Expected values are the ones tests/test_pixel_math.py asserts for the numpy twin.
#include "edge_ls/pixel_math.h"

#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "check.h"

namespace el = edge_ls;

static void test_clamp_keeps_nan() {
  CHECK(el::clamp01(-0.5f) == 0.0f);
  CHECK(el::clamp01(1.5f) == 1.0f);
  CHECK(el::clamp01(0.25f) == 0.25f);
  CHECK(std::isnan(el::clamp01(std::numeric_limits<float>::quiet_NaN())));
}

static void test_to_unit_range_clips_and_normalize_standardizes() {
  const float raw[3] = {0.0f, 100.0f, 300.0f};
  const float want[3] = {0.0f, 0.5f, 1.0f};
  for (int i = 0; i < 3; ++i) CHECK_NEAR(el::to_unit_range(raw[i], 0.0f, 1.0f / 200.0f), want[i], 1e-7);
  const float raw2[3] = {50.0f, 60.0f, 70.0f};
  for (int i = 0; i < 3; ++i) CHECK_NEAR(el::to_unit_range(raw2[i], 50.0f, 1.0f / 20.0f), want[i], 1e-7);
  CHECK(el::to_unit_range(10.0f, 50.0f, 1.0f / 20.0f) == 0.0f);  // below the offset: clipped to 0
  const float z[3] = {-2.0f, 0.0f, 2.0f};
  for (int i = 0; i < 3; ++i) CHECK_NEAR(el::normalize(want[i], 0.5f, 0.25f), z[i], 1e-7);
  CHECK_NEAR(el::preprocess_value(60.0f, 50.0f, 1.0f / 20.0f, 0.5f, 0.25f), 0.0, 1e-7);
}

static void test_sigmoid_is_stable_and_temperature_flattens() {
  const float z[5] = {-1000.0f, -2.0f, 0.0f, 2.0f, 1000.0f};
  const double want[5] = {0.0, 0.1192029, 0.5, 0.8807971, 1.0};
  for (int i = 0; i < 5; ++i) {
    const float p = el::sigmoid(z[i], 1.0f);
    CHECK(std::isfinite(p));
    CHECK_NEAR(p, want[i], 1e-6);
  }
  CHECK(el::sigmoid(2.0f, 2.0f) < el::sigmoid(2.0f, 1.0f));
  CHECK_NEAR(el::sigmoid(2.0f, 2.0f), el::sigmoid(1.0f, 1.0f), 0.0);
  for (float v = -30.0f; v <= 30.0f; v += 0.37f) CHECK_NEAR(el::sigmoid(v, 1.0f) + el::sigmoid(-v, 1.0f), 1.0, 1e-6);
  CHECK(std::isnan(el::sigmoid(std::numeric_limits<float>::quiet_NaN(), 1.0f)));
}

static void test_hann_window_is_positive_symmetric_and_sums_to_one_at_half_overlap() {
  const int size = 64;
  for (int i = 0; i < size; ++i) {
    CHECK(el::hann(i, size) > 0.0f);
    CHECK_NEAR(el::hann(i, size), el::hann(size - 1 - i, size), 1e-7);
  }
  CHECK(el::hann(31, size) > 0.99f);
  CHECK(el::hann(0, size) < 0.01f);
  // sin^2 + cos^2: two windows shifted by half a tile cover every pixel with total weight 1.
  for (int i = 0; i < size / 2; ++i) CHECK_NEAR(el::hann(i, size) + el::hann(i + size / 2, size), 1.0, 1e-6);
  const float window[3] = {0.25f, 1.0f, 0.5f};
  CHECK(el::blend_weight(window, 0, 2) == 0.125f);
}

static void test_confidence_is_zero_at_threshold_and_one_at_certainty() {
  const float p[5] = {0.0f, 0.15f, 0.3f, 0.65f, 1.0f};
  const double want[5] = {1.0, 0.5, 0.0, 0.5, 1.0};
  for (int i = 0; i < 5; ++i) CHECK_NEAR(el::confidence(p[i], 0.3f), want[i], 1e-6);
  CHECK(el::confidence(0.5f, 0.5f) == 0.0f);
}

static void test_blend_resolve_divides_and_marks_uncovered() {
  CHECK(el::blend_resolve(0.0f, 0.0f) == 0.0f);
  CHECK_NEAR(el::blend_resolve(0.3f, 0.6f), 0.5, 1e-7);
  CHECK(el::blend_resolve(0.61f, 0.6f) == 1.0f);  // rounding past 1 is clipped
}

static void test_planar_source_inverts_the_interleaved_layout() {
  const int n = 2, h = 3, w = 4, bands = 3;
  const int64_t plane = static_cast<int64_t>(h) * w;
  std::set<int64_t> seen;
  for (int img = 0; img < n; ++img)
    for (int b = 0; b < bands; ++b)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const int64_t i = ((static_cast<int64_t>(img) * bands + b) * h + y) * w + x;
          const el::PlanarSource s = el::planar_source(i, plane, bands);
          CHECK(s.band == b);
          CHECK(s.source == ((static_cast<int64_t>(img) * h + y) * w + x) * bands + b);
          seen.insert(s.source);
        }
  CHECK(static_cast<int64_t>(seen.size()) == n * plane * bands);  // a bijection
}

static void test_blend_target_crops_to_the_canvas_and_skips_invalid() {
  const int size = 4;
  const int32_t origins[4] = {-1, 2, 1, -3};  // tile 0 at (y=-1, x=2), tile 1 at (1, -3)
  const int64_t canvas_h = 3, canvas_w = 5;
  std::vector<uint8_t> valid(2 * size * size, 1);
  valid[size * size + 1 * size + 3] = 0;  // tile 1, ty=1, tx=3 -> canvas (2, 0): skipped
  int inside = 0;
  el::BlendTarget t{};
  for (int64_t i = 0; i < 2 * size * size; ++i) {
    if (!el::blend_target(i, size, origins, valid.data(), canvas_h, canvas_w, &t)) continue;
    ++inside;
    const int tile = static_cast<int>(i / (size * size));
    const int64_t y = origins[2 * tile] + t.ty, x = origins[2 * tile + 1] + t.tx;
    CHECK(y >= 0 && y < canvas_h && x >= 0 && x < canvas_w);
    CHECK(t.canvas_index == y * canvas_w + x);
    CHECK(!(tile == 1 && y == 2 && x == 0));
  }
  // tile 0: rows 0..2 (3) x cols 2..4 (3) = 9; tile 1: rows 1..2 (2) x col 0 (1) = 2, minus 1 invalid.
  CHECK(inside == 9 + 1);
  CHECK(!el::blend_target(0, size, origins, nullptr, canvas_h, canvas_w, &t));  // (−1, 2): above the canvas
}

static void test_tile_probability_applies_sigmoid_only_to_logits() {
  CHECK(el::tile_probability(0.25f, 0, 3.0f) == 0.25f);
  CHECK_NEAR(el::tile_probability(0.0f, 1, 3.0f), 0.5, 0.0);
}

int main() {
  test_clamp_keeps_nan();
  test_to_unit_range_clips_and_normalize_standardizes();
  test_sigmoid_is_stable_and_temperature_flattens();
  test_hann_window_is_positive_symmetric_and_sums_to_one_at_half_overlap();
  test_confidence_is_zero_at_threshold_and_one_at_certainty();
  test_blend_resolve_divides_and_marks_uncovered();
  test_planar_source_inverts_the_interleaved_layout();
  test_blend_target_crops_to_the_canvas_and_skips_invalid();
  test_tile_probability_applies_sigmoid_only_to_logits();
  return check::report("test_pixel_math");
}
