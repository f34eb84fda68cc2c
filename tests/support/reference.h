// reference.h - an independent double-precision implementation of the math in
// backprop.h, written from the formulas (not from the library's code), used as
// the ground truth in gradient tests.
#pragma once
#include <cstdint>
#include <vector>

#include "backprop.h"

namespace ref {

struct Net {
  std::vector<int> sizes;
  // Layer i's activation (empty: sigmoid everywhere) and the cost.
  std::vector<bp_activation> acts;
  bp_cost cost = BP_COST_QUADRATIC;
  bp_activation act(int i) const { return acts.empty() ? BP_ACTIVATION_SIGMOID : acts[i]; }
  std::vector<std::vector<double>> W;  // W[i]: s[i+1] x s[i], row-major
  std::vector<std::vector<double>> b;  // b[i]: s[i+1]
  int layers() const { return (int)sizes.size() - 1; }
};

struct Grads {
  std::vector<std::vector<double>> dW, db;
};

// Copies the weights, activations and cost out of a library network (any
// backend).
Net from_network(const bp_network *net);

// The library's float32 gradients of the batch's mean cost (bp_backward, then
// bp_network_get_gradient per layer), in the reference's shape. A failing
// call is a test failure (gtest); *cost receives the batch cost.
Grads library_grads(bp_network *net, const std::vector<float> &X, const std::vector<float> &Y,
                    int n, float *cost);
// Mean cost of the batch (X: n x s0, Y: n x sL row-major).
double cost(const Net &net, const std::vector<double> &X, const std::vector<double> &Y, int n);
// Outputs (n x sL row-major).
std::vector<double> forward(const Net &net, const std::vector<double> &X, int n);
// Analytic gradients of the mean cost by the chain rule, in double.
Grads gradients(const Net &net, const std::vector<double> &X, const std::vector<double> &Y, int n);
// Central finite differences of the mean cost, in double (step h).
Grads finite_differences(const Net &net, const std::vector<double> &X,
                         const std::vector<double> &Y, int n, double h = 1e-6);

// Fresh random data: uniform in [lo, hi), never all zeros.
std::vector<float> random_vector(size_t count, uint64_t seed, float lo = -1.0f, float hi = 1.0f);
std::vector<double> to_double(const std::vector<float> &v);

// |a - b| / max(|a|, |b|, floor)
double rel_err(double a, double b, double floor = 1e-8);

}  // namespace ref
