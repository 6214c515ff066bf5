// A tiny test harness: TEST(name) { CHECK(...); } and a main() that runs every test.
//
// Header-only so the host tests need nothing but g++. A failed check prints where and why and
// the test run exits non-zero; the remaining checks of the test still run.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace check {

typedef void (*TestFunction)();

struct Test {
  const char* name;
  TestFunction function;
  Test* next;
};

inline Test*& registry() {
  static Test* first = nullptr;
  return first;
}

inline int& failures() {
  static int count = 0;
  return count;
}

struct Register {
  Register(Test* test) {
    // append, so tests run in the order they are written
    Test** slot = &registry();
    while (*slot) slot = &(*slot)->next;
    *slot = test;
  }
};

inline void fail(const char* file, int line, const char* what) {
  std::printf("  FAILED %s:%d: %s\n", file, line, what);
  ++failures();
}

inline int run_all() {
  int tests = 0;
  for (Test* test = registry(); test; test = test->next) {
    const int before = failures();
    test->function();
    std::printf("%s %s\n", failures() == before ? "ok  " : "FAIL", test->name);
    ++tests;
  }
  std::printf("%d tests, %d failed checks\n", tests, failures());
  return failures() ? 1 : 0;
}

}  // namespace check

#define TEST(name)                                                    \
  static void name();                                                 \
  static check::Test name##_test = {#name, name, nullptr};            \
  static check::Register name##_register(&name##_test);               \
  static void name()

#define CHECK(condition) \
  ((condition) ? (void)0 : check::fail(__FILE__, __LINE__, #condition))

#define CHECK_EQ(actual, expected)                                                          \
  do {                                                                                      \
    const long long check_a = static_cast<long long>(actual);                               \
    const long long check_e = static_cast<long long>(expected);                             \
    if (check_a != check_e) {                                                               \
      char check_text[256];                                                                 \
      std::snprintf(check_text, sizeof check_text, "%s == %s (%lld != %lld)", #actual,      \
                    #expected, check_a, check_e);                                           \
      check::fail(__FILE__, __LINE__, check_text);                                          \
    }                                                                                       \
  } while (0)

#define CHECK_NEAR(actual, expected, tolerance)                                             \
  do {                                                                                      \
    const double check_a = static_cast<double>(actual);                                     \
    const double check_e = static_cast<double>(expected);                                   \
    if (!(std::fabs(check_a - check_e) <= (tolerance))) {                                   \
      char check_text[256];                                                                 \
      std::snprintf(check_text, sizeof check_text, "%s ~ %s (%g vs %g, tolerance %g)",      \
                    #actual, #expected, check_a, check_e, static_cast<double>(tolerance));  \
      check::fail(__FILE__, __LINE__, check_text);                                          \
    }                                                                                       \
  } while (0)
