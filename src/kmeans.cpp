// k-means for product quantization: exhaustive assignment, float64 means,
// empty-cluster splitting.
#include "diffq/kmeans.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "diffq/error.h"

namespace diffq {

torch::Tensor nearest_centroids(const torch::Tensor& x, const torch::Tensor& centroids,
                                int64_t chunk_size) {
  DIFFQ_CHECK(x.dim() == 2 && centroids.dim() == 2 && x.size(1) == centroids.size(1),
              "nearest_centroids: expected [n, d] rows and [K, d] centroids, got ", x.sizes(),
              " and ", centroids.sizes());
  DIFFQ_CHECK(chunk_size >= 1, "nearest_centroids: chunk_size must be positive");
  torch::NoGradGuard no_grad;
  const auto c = centroids.to(x.scalar_type());
  // argmin_k ‖x‖² − 2xᵀc_k + ‖c_k‖²: the ‖x‖² term is constant per row.
  const auto cnorm = c.pow(2).sum(1).unsqueeze(0);  // [1, K]
  const auto ct = c.t();
  const int64_t n = x.size(0);
  auto out = torch::empty({n}, x.options().dtype(torch::kInt64));
  for (int64_t start = 0; start < n; start += chunk_size) {
    const int64_t end = std::min(n, start + chunk_size);
    auto rows = x.slice(0, start, end);
    auto dist = torch::addmm(cnorm, rows, ct, /*beta=*/1, /*alpha=*/-2);
    out.slice(0, start, end).copy_(dist.argmin(1));
  }
  return out;
}

double kmeans_objective(const torch::Tensor& x, const torch::Tensor& centroids,
                        const torch::Tensor& assignments) {
  torch::NoGradGuard no_grad;
  if (x.size(0) == 0) return 0.0;
  auto diff = x.to(torch::kFloat64) - centroids.to(torch::kFloat64).index_select(0, assignments);
  return diff.pow(2).sum().item<double>() / static_cast<double>(x.size(0));
}

namespace {

// Per-row squared distance to its own centroid (float64).
torch::Tensor own_distances(const torch::Tensor& x64, const torch::Tensor& c64,
                            const torch::Tensor& a) {
  return (x64 - c64.index_select(0, a)).pow(2).sum(1);
}

}  // namespace

KMeansResult kmeans(const torch::Tensor& x, const KMeansOptions& options) {
  DIFFQ_CHECK(x.defined() && x.dim() == 2 && x.is_floating_point(),
              "kmeans: expected a floating-point [n, d] matrix");
  const int64_t n = x.size(0);
  const int64_t k = options.num_centroids();
  DIFFQ_CHECK(k >= 1 && k <= n, "kmeans: the number of centroids (", k,
              ") must be in 1..n (n = ", n, " rows)");
  DIFFQ_CHECK(options.iterations() >= 0, "kmeans: iterations must be non-negative");
  torch::NoGradGuard no_grad;
  auto rows = x.detach().contiguous();
  DIFFQ_CHECK(torch::isfinite(rows).all().item<bool>(), "kmeans: the rows hold NaN or inf");
  const auto x64 = rows.to(torch::kFloat64);
  auto gen = at::detail::createCPUGenerator(options.seed());
  torch::Tensor c64;
  if (options.init() == KMeansInit::kPlusPlus) {
    c64 = torch::empty({k, x64.size(1)}, x64.options());
    auto first = torch::randint(n, {1}, gen, torch::TensorOptions().dtype(torch::kInt64));
    c64[0].copy_(x64[first.item<int64_t>()]);
    auto d2 = (x64 - c64[0]).pow(2).sum(1);
    for (int64_t j = 1; j < k; ++j) {
      auto weights = d2.to(torch::kCPU);
      int64_t next;
      if (weights.sum().item<double>() > 0) {
        next = torch::multinomial(weights, 1, false, gen).item<int64_t>();
      } else {
        next = torch::randint(n, {1}, gen, torch::TensorOptions().dtype(torch::kInt64)).item<int64_t>();
      }
      c64[j].copy_(x64[next]);
      d2 = torch::minimum(d2, (x64 - c64[j]).pow(2).sum(1));
    }
  } else {
    auto pick = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kInt64))
                    .slice(0, 0, k)
                    .to(rows.device());
    c64 = x64.index_select(0, pick).clone();
  }

  KMeansResult result;
  auto a = nearest_centroids(rows, c64.to(rows.scalar_type()), options.chunk_size());
  result.objective.push_back(kmeans_objective(x64, c64, a));
  torch::Tensor previous;
  for (int64_t it = 0; it < options.iterations(); ++it) {
    if (it > 0) {
      a = nearest_centroids(rows, c64.to(rows.scalar_type()), options.chunk_size());
      if (previous.defined() && torch::equal(a, previous)) break;
    }
    // Empty clusters: split the most populated cluster that has spread, by
    // moving its farthest point into the empty one (objective decreases).
    auto counts = torch::bincount(a, {}, k).to(torch::kCPU);
    auto counts_a = counts.accessor<int64_t, 1>();
    bool any_empty = false;
    for (int64_t j = 0; j < k; ++j) any_empty = any_empty || counts_a[j] == 0;
    if (any_empty) {
      auto dist = own_distances(x64, c64, a);
      for (int64_t j = 0; j < k; ++j) {
        if (counts_a[j] != 0) continue;
        auto order = std::get<1>(counts.sort(/*dim=*/0, /*descending=*/true));
        auto order_a = order.accessor<int64_t, 1>();
        for (int64_t r = 0; r < k; ++r) {
          const int64_t big = order_a[r];
          if (counts_a[big] < 2) break;
          auto masked = torch::where(a == big, dist, torch::zeros({}, dist.options()));
          auto far = masked.argmax().item<int64_t>();
          if (!(masked[far].item<double>() > 0)) continue;  // all identical: cannot split
          c64[j].copy_(x64[far]);
          a[far] = j;
          dist[far] = 0;
          counts_a[big] -= 1;
          counts_a[j] = 1;
          ++result.splits;
          break;
        }
      }
    }
    // Mean update (float64 sums: the mean of identical rows is exact).
    auto sums = torch::zeros_like(c64).index_add_(0, a, x64);
    auto cnt = torch::bincount(a, {}, k).to(torch::kFloat64).unsqueeze(1);
    c64 = torch::where(cnt > 0, sums / cnt.clamp_min(1), c64);
    result.objective.push_back(kmeans_objective(x64, c64, a));
    result.iterations = it + 1;
    previous = a.clone();
  }
  result.centroids = c64.to(rows.scalar_type());
  result.assignments = a;
  return result;
}

}  // namespace diffq
