// A tiny test harness (no gtest download): CHECK / CHECK_NEAR record failures with file:line and
// the test's main returns the failure count, which ctest reads as pass (0) or fail.
#ifndef EDGE_LS_TESTS_CHECK_H
#define EDGE_LS_TESTS_CHECK_H

#include <cmath>
#include <cstdio>

namespace check {
inline int failures = 0;
inline int checks = 0;

inline void record(bool ok, const char* expr, const char* file, int line) {
  ++checks;
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, expr);
  }
}

inline void record_near(double got, double want, double tol, const char* expr, const char* file, int line) {
  ++checks;
  const bool ok = (std::isnan(got) && std::isnan(want)) || std::fabs(got - want) <= tol;
  if (!ok) {
    ++failures;
    std::fprintf(stderr, "%s:%d: FAILED: %s = %.9g, want %.9g (tol %.3g)\n", file, line, expr, got, want, tol);
  }
}

inline int report(const char* name) {
  std::printf("%s: %d checks, %d failed\n", name, checks, failures);
  return failures == 0 ? 0 : 1;
}
}  // namespace check

#define CHECK(expr) check::record(static_cast<bool>(expr), #expr, __FILE__, __LINE__)
#define CHECK_NEAR(got, want, tol) check::record_near((got), (want), (tol), #got, __FILE__, __LINE__)

#endif  // EDGE_LS_TESTS_CHECK_H
