// The FFI benchmark's native baseline: the same quantized-matmul loop as scripts/bench/ffi.ts,
// in C++ against MLX directly. Prints mean microseconds per iteration for each batch size.
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "mlx/mlx.h"

namespace mx = mlx::core;

int main(int argc, char** argv) {
  int iters = argc > 1 ? std::atoi(argv[1]) : 200;
  auto w = mx::random::normal({1536, 576}, mx::float32, 0.0, 0.02, mx::random::key(1));
  auto q = mx::quantize(w, 32, 4);
  mx::eval(q);
  for (int rows : {1, 128}) {
    auto x = mx::random::normal({rows, 576}, mx::float32, 0.0, 1.0, mx::random::key(2));
    mx::eval(x);
    for (int i = 0; i < 10; i++) mx::eval(mx::quantized_matmul(x, q[0], q[1], q[2], true, 32, 4));
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; i++) mx::eval(mx::quantized_matmul(x, q[0], q[1], q[2], true, 32, 4));
    auto t1 = std::chrono::steady_clock::now();
    double us = std::chrono::duration<double, std::micro>(t1 - t0).count() / iters;
    std::printf("%d %.3f\n", rows, us);
  }
  return 0;
}
