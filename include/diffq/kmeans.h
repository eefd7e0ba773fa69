#pragma once
/// \file kmeans.h
/// k-means (EM) over the rows of a matrix, for product quantization (iPQ).
///
/// Exhaustive assignment through matrix products (distances expanded as
/// ‖x‖² − 2xᵀc + ‖c‖², computed in chunks of rows), mean update accumulated
/// in float64 (the mean of identical rows is that row exactly), random
/// initial centroids drawn among the rows (uniformly, or k-means++), and empty clusters fixed by
/// splitting the most populated cluster: its point farthest from the
/// centroid becomes the empty cluster's centroid. With that split the
/// objective never increases (up to float rounding in the assignment).

#include <cstdint>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

namespace diffq {

/// How `kmeans` draws its initial centroids.
enum class KMeansInit {
  /// K distinct rows drawn uniformly (the iPQ paper's choice).
  kRandom,
  /// k-means++ (D² sampling): less likely to start two centroids in one
  /// cluster, at the cost of K passes over the rows.
  kPlusPlus,
};

/// Options of `kmeans`.
struct KMeansOptions {
  /// Number of centroids K (at most the number of rows).
  TORCH_ARG(int64_t, num_centroids) = 256;
  /// Maximum number of EM iterations (stops early when assignments are stable).
  TORCH_ARG(int64_t, iterations) = 20;
  /// Seed of the initial centroid draw.
  TORCH_ARG(uint64_t, seed) = 0;
  /// Initialisation.
  TORCH_ARG(KMeansInit, init) = KMeansInit::kRandom;
  /// Rows per distance block (bounds the memory to chunk_size·K floats).
  TORCH_ARG(int64_t, chunk_size) = 16384;
};

/// Result of `kmeans`.
struct KMeansResult {
  /// [K, d] centroids, dtype and device of the input. Each is the mean of
  /// the rows assigned to it.
  torch::Tensor centroids;
  /// int64 [n] index of the centroid of each row (device of the input).
  torch::Tensor assignments;
  /// Mean squared distance Σ‖x − c(x)‖² / n: entry 0 after the first
  /// assignment to the initial centroids, then one entry after each
  /// iteration's mean update. Never increases.
  std::vector<double> objective;
  /// Empty clusters fixed by splitting.
  int64_t splits = 0;
  /// Iterations run.
  int64_t iterations = 0;
};

/// Clusters the rows of `x` ([n, d], floating point) into K clusters.
/// Throws `diffq::Error` when K is not in 1..n or `x` holds NaN/inf.
KMeansResult kmeans(const torch::Tensor& x, const KMeansOptions& options = {});

/// Index (int64 [n]) of the nearest centroid of each row of `x`, exhaustive,
/// in chunks of `chunk_size` rows. Ties go to the lowest index.
torch::Tensor nearest_centroids(const torch::Tensor& x, const torch::Tensor& centroids,
                                int64_t chunk_size = 16384);

/// Mean squared distance Σ‖x_i − c_{a_i}‖² / n, computed directly in float64.
double kmeans_objective(const torch::Tensor& x, const torch::Tensor& centroids,
                        const torch::Tensor& assignments);

}  // namespace diffq
