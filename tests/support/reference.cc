#include "reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace ref {

static double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// Each activation from its textbook definition, in double (softmax: the
// whole layer, in forward_one).
static double activate(bp_activation f, double z) {
  switch (f) {
    case BP_ACTIVATION_TANH: return std::tanh(z);
    case BP_ACTIVATION_RELU: return z > 0.0 ? z : 0.0;
    case BP_ACTIVATION_IDENTITY: return z;
    default: return sigmoid(z);
  }
}
// f'(z), from z.
static double derivative(bp_activation f, double z) {
  switch (f) {
    case BP_ACTIVATION_TANH: return 1.0 - std::tanh(z) * std::tanh(z);
    case BP_ACTIVATION_RELU: return z > 0.0 ? 1.0 : 0.0;
    case BP_ACTIVATION_IDENTITY: return 1.0;
    default: return sigmoid(z) * (1.0 - sigmoid(z));
  }
}
// log(1 + e^z) and log(sum_j e^z_j), both in double.
static double softplus(double z) { return std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z))); }
static double logsumexp(const std::vector<double> &z) {
  const double m = *std::max_element(z.begin(), z.end());
  double s = 0.0;
  for (double v : z) s += std::exp(v - m);
  return m + std::log(s);
}

Net from_network(const bp_network *net) {
  Net r;
  const int L = bp_network_n_layers(net);
  for (int i = 0; i <= L; ++i) r.sizes.push_back(bp_network_size(net, i));
  for (int i = 0; i < L; ++i) r.acts.push_back(bp_network_get_activation(net, i));
  r.cost = bp_network_get_cost(net);
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
      a[i + 1][j] = activate(net.act(i), s);
    }
    if (net.act(i) == BP_ACTIVATION_SOFTMAX) {
      const double lse = logsumexp(z[i + 1]);
      for (int j = 0; j < out; ++j) a[i + 1][j] = std::exp(z[i + 1][j] - lse);
    }
  }
}

// C0 of one example from its output z and a (the definitions of backprop.h).
static double example_cost(const Net &net, const std::vector<double> &z,
                           const std::vector<double> &a, const double *y) {
  const int sL = net.sizes.back();
  const bp_activation f = net.act(net.layers() - 1);
  double c = 0.0;
  if (net.cost == BP_COST_CROSS_ENTROPY && f == BP_ACTIVATION_SOFTMAX) {
    const double lse = logsumexp(z);
    for (int j = 0; j < sL; ++j) c -= y[j] * (z[j] - lse);  // -sum y log a
  } else if (net.cost == BP_COST_CROSS_ENTROPY) {
    // -[y log a + (1 - y) log(1 - a)], log a = -softplus(-z), log(1-a) = -softplus(z)
    for (int j = 0; j < sL; ++j) c += y[j] * softplus(-z[j]) + (1.0 - y[j]) * softplus(z[j]);
  } else {
    for (int j = 0; j < sL; ++j) c += (a[j] - y[j]) * (a[j] - y[j]);
  }
  return c;
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
  const int s0 = net.sizes.front(), sL = net.sizes.back();
  std::vector<std::vector<double>> z, a;
  double c = 0.0;
  for (int e = 0; e < n; ++e) {
    forward_one(net, &X[(size_t)e * s0], z, a);
    c += example_cost(net, z.back(), a.back(), &Y[(size_t)e * sL]);
  }
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
    // delta = dC0/dz_L by the chain rule through the output activation.
    const double *y = &Y[(size_t)e * sL];
    const bp_activation f = net.act(L - 1);
    std::vector<double> delta(sL);
    if (net.cost == BP_COST_CROSS_ENTROPY && f == BP_ACTIVATION_SOFTMAX) {
      // d/dz_j of -sum_i y_i (z_i - lse) = -y_j + softmax_j sum_i y_i
      double ysum = 0.0;
      for (int j = 0; j < sL; ++j) ysum += y[j];
      for (int j = 0; j < sL; ++j) delta[j] = a[L][j] * ysum - y[j];
    } else if (net.cost == BP_COST_CROSS_ENTROPY) {
      // d/dz of y softplus(-z) + (1 - y) softplus(z) = -y (1 - s) + (1 - y) s = s - y
      for (int j = 0; j < sL; ++j) delta[j] = sigmoid(z[L][j]) - y[j];
    } else if (f == BP_ACTIVATION_SOFTMAX) {
      // dC0/da = 2 (a - y); da_i/dz_j = a_i (delta_ij - a_j)
      for (int j = 0; j < sL; ++j) {
        double s = 0.0;
        for (int i = 0; i < sL; ++i)
          s += 2.0 * (a[L][i] - y[i]) * a[L][i] * ((i == j ? 1.0 : 0.0) - a[L][j]);
        delta[j] = s;
      }
    } else {
      // dC0/da_L = 2 (a - y); delta = that * f'(z).
      for (int j = 0; j < sL; ++j) delta[j] = 2.0 * (a[L][j] - y[j]) * derivative(f, z[L][j]);
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
          prev[k] = s * derivative(net.act(i - 1), z[i][k]);
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
