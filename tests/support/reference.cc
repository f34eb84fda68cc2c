#include "reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace ref {

static double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

Net from_network(const bp_network *net) {
  Net r;
  const int L = bp_network_n_layers(net);
  for (int i = 0; i <= L; ++i) r.sizes.push_back(bp_network_size(net, i));
  for (int i = 0; i < L; ++i) {
    std::vector<float> W((size_t)r.sizes[i] * r.sizes[i + 1]), b(r.sizes[i + 1]);
    bp_network_get_layer(net, i, W.data(), b.data());
    r.W.emplace_back(W.begin(), W.end());
    r.b.emplace_back(b.begin(), b.end());
  }
  return r;
}

// Forward for one example, keeping z and a of every layer (a[0] = x).
static void forward_one(const Net &net, const double *x, std::vector<std::vector<double>> &z,
                        std::vector<std::vector<double>> &a) {
  const int L = net.layers();
  a.assign(L + 1, {});
  z.assign(L + 1, {});
  a[0].assign(x, x + net.sizes[0]);
  for (int i = 0; i < L; ++i) {
    const int in = net.sizes[i], out = net.sizes[i + 1];
    z[i + 1].assign(out, 0.0);
    a[i + 1].assign(out, 0.0);
    for (int j = 0; j < out; ++j) {
      double s = net.b[i][j];
      for (int k = 0; k < in; ++k) s += net.W[i][(size_t)j * in + k] * a[i][k];
      z[i + 1][j] = s;
      a[i + 1][j] = sigmoid(s);
    }
  }
}

std::vector<double> forward(const Net &net, const std::vector<double> &X, int n) {
  const int s0 = net.sizes.front(), sL = net.sizes.back();
  std::vector<double> out((size_t)n * sL);
  std::vector<std::vector<double>> z, a;
  for (int e = 0; e < n; ++e) {
    forward_one(net, &X[(size_t)e * s0], z, a);
    std::copy(a.back().begin(), a.back().end(), out.begin() + (size_t)e * sL);
  }
  return out;
}

double cost(const Net &net, const std::vector<double> &X, const std::vector<double> &Y, int n) {
  const int sL = net.sizes.back();
  std::vector<double> out = forward(net, X, n);
  double c = 0.0;
  for (size_t i = 0; i < (size_t)n * sL; ++i) c += (out[i] - Y[i]) * (out[i] - Y[i]);
  return c / n;
}

static Grads zero_grads(const Net &net) {
  Grads g;
  for (int i = 0; i < net.layers(); ++i) {
    g.dW.emplace_back(net.W[i].size(), 0.0);
    g.db.emplace_back(net.b[i].size(), 0.0);
  }
  return g;
}

Grads gradients(const Net &net, const std::vector<double> &X, const std::vector<double> &Y,
                int n) {
  const int L = net.layers(), s0 = net.sizes.front(), sL = net.sizes.back();
  Grads g = zero_grads(net);
  std::vector<std::vector<double>> z, a;
  for (int e = 0; e < n; ++e) {
    forward_one(net, &X[(size_t)e * s0], z, a);
    // dC0/da_L = 2 (a - y); delta = dC0/dz = that * sigma'(z).
    std::vector<double> delta(sL);
    for (int j = 0; j < sL; ++j) {
      double s = a[L][j];
      delta[j] = 2.0 * (s - Y[(size_t)e * sL + j]) * s * (1.0 - s);
    }
    for (int i = L - 1; i >= 0; --i) {
      const int in = net.sizes[i], out = net.sizes[i + 1];
      for (int j = 0; j < out; ++j) {
        g.db[i][j] += delta[j] / n;
        for (int k = 0; k < in; ++k) g.dW[i][(size_t)j * in + k] += delta[j] * a[i][k] / n;
      }
      if (i > 0) {
        std::vector<double> prev(in, 0.0);
        for (int k = 0; k < in; ++k) {
          double s = 0.0;
          for (int j = 0; j < out; ++j) s += net.W[i][(size_t)j * in + k] * delta[j];
          prev[k] = s * a[i][k] * (1.0 - a[i][k]);
        }
        delta.swap(prev);
      }
    }
  }
  return g;
}

Grads finite_differences(const Net &net, const std::vector<double> &X,
                         const std::vector<double> &Y, int n, double h) {
  Net p = net;
  Grads g = zero_grads(net);
  auto diff = [&](double &param) {
    const double keep = param;
    param = keep + h;
    const double up = cost(p, X, Y, n);
    param = keep - h;
    const double down = cost(p, X, Y, n);
    param = keep;
    return (up - down) / (2.0 * h);
  };
  for (int i = 0; i < net.layers(); ++i) {
    for (size_t k = 0; k < p.W[i].size(); ++k) g.dW[i][k] = diff(p.W[i][k]);
    for (size_t k = 0; k < p.b[i].size(); ++k) g.db[i][k] = diff(p.b[i][k]);
  }
  return g;
}

std::vector<float> random_vector(size_t count, uint64_t seed, float lo, float hi) {
  std::mt19937_64 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(count);
  for (auto &x : v) x = dist(gen);
  return v;
}

std::vector<double> to_double(const std::vector<float> &v) { return {v.begin(), v.end()}; }

double rel_err(double a, double b, double floor) {
  return std::fabs(a - b) / std::max({std::fabs(a), std::fabs(b), floor});
}

Grads library_grads(bp_network *net, const std::vector<float> &X, const std::vector<float> &Y,
                    int n, float *cost) {
  EXPECT_EQ(bp_backward(net, X.data(), Y.data(), n, cost), BP_OK)
      << bp_context_last_error(bp_network_context(net));
  Grads g;
  for (int i = 0; i < bp_network_n_layers(net); ++i) {
    std::vector<float> dW((size_t)bp_network_size(net, i) * bp_network_size(net, i + 1), NAN);
    std::vector<float> db(bp_network_size(net, i + 1), NAN);
    EXPECT_EQ(bp_network_get_gradient(net, i, dW.data(), db.data()), BP_OK);
    g.dW.emplace_back(dW.begin(), dW.end());
    g.db.emplace_back(db.begin(), db.end());
  }
  return g;
}

}  // namespace ref
