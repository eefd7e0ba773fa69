#pragma once
/// \file distributed.h
/// Data-parallel training over several processes, on one machine or many,
/// with PyTorch's own distributed engine (c10d: the TCP rendezvous store and
/// the Gloo process group). No transport of our own.
///
/// \code
///   auto comm = std::make_shared<diffq::train::Communicator>(
///       diffq::train::distributed_options_from_environment());   // RANK, WORLD_SIZE, ...
///   diffq::train::Trainer trainer(net, options);
///   diffq::train::DataParallel parallel(trainer, comm);           // same start on every rank
///   // each rank steps on its own shard of every global batch:
///   trainer.step({inputs, targets, /*share=*/double(local) / double(global)});
/// \endcode
///
/// Every rank holds a full replica. `DataParallel` broadcasts rank 0's
/// parameters, buffers and quantizer parameters at start; after each
/// backward it sums the gradients of the model's parameters AND of the
/// quantizer's own parameters (DiffQ's bits logits, LSQ steps, iPQ
/// centroids), each weighted by the rank's share of the global batch, in
/// buckets of a few MiB; then it broadcasts rank 0's buffers (BatchNorm
/// statistics). The sum lands bit-identical on every rank, so the replicas
/// stay bit-identical. The quantizers' noise is a function of (seed, step,
/// tensor), the same on every rank: N ranks with batch b train as one
/// process with batch N·b, up to the order of float summation.
///
/// The header does not include c10d: the process group lives in the
/// implementation.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/arg.h>
#include <torch/types.h>

#include "diffq/model_ref.h"

namespace diffq {
namespace train {

class Trainer;

/// Where a process sits in a data-parallel job and how it meets the others.
struct DistributedOptions {
  /// This process's rank, in [0, world_size).
  TORCH_ARG(int, rank) = 0;
  /// Number of processes.
  TORCH_ARG(int, world_size) = 1;
  /// Address of rank 0's rendezvous store (a host name or an IP address).
  TORCH_ARG(std::string, master_addr) = "127.0.0.1";
  /// Port of rank 0's rendezvous store.
  TORCH_ARG(int, master_port) = 29500;
  /// Longest wait for the other processes (rendezvous and every collective):
  /// a rank that died or hangs makes the others fail after at most this.
  TORCH_ARG(double, timeout_seconds) = 300;
  /// Gradient bytes per all-reduce call.
  TORCH_ARG(double, bucket_mib) = 4;
  /// Network interface Gloo binds to (e.g. "eth0"); empty: the loopback
  /// interface when the master is local, else the interface of this
  /// machine's host name.
  TORCH_ARG(std::string, interface) = "";
};

/// Checks `options` (rank in range, port in 1..65535, positive timeout and
/// bucket size); throws `diffq::Error` naming the bad value.
void check_distributed_options(const DistributedOptions& options);

/// Options from the variables `torchrun` sets: RANK, WORLD_SIZE,
/// MASTER_ADDR, MASTER_PORT (and GLOO_SOCKET_IFNAME). Absent variables keep
/// their defaults (a single process); malformed ones are an error.
DistributedOptions distributed_options_from_environment();

/// "ADDR:PORT" -> (address, port); throws `diffq::Error` when malformed.
std::pair<std::string, int> parse_master(const std::string& text);

/// A process group: collective operations among the ranks of one job. Every
/// rank must call the same operations in the same order. A peer that ends
/// or does not answer within the timeout makes the operation throw
/// `diffq::Error`.
class Communicator {
 public:
  /// Meets the other ranks (rank 0 hosts the store). Throws `diffq::Error`
  /// when they are not all there within the timeout.
  explicit Communicator(DistributedOptions options);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// This process's rank.
  int rank() const { return options_.rank(); }
  /// Number of processes.
  int world_size() const { return options_.world_size(); }
  /// The options it was built with.
  const DistributedOptions& options() const { return options_; }

  /// Sums each tensor over the ranks, in place (contiguous tensors of one
  /// dtype per call are packed into buckets of `bucket_mib`).
  void all_reduce_sum(const std::vector<torch::Tensor>& tensors);
  /// Copies rank `root`'s values of the tensors into every rank's, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors, int root = 0);
  /// Sums doubles over the ranks.
  std::vector<double> all_reduce_sum(std::vector<double> values);
  /// True on every rank when `flag` is true on any rank.
  bool any(bool flag);
  /// Rank `root`'s bytes, on every rank (through the rendezvous store: for
  /// small records such as a checkpoint or a decision).
  std::string broadcast_bytes(const std::string& bytes, int root = 0);
  /// Waits for every rank.
  void barrier();

  /// Seconds spent in collectives so far.
  double seconds() const { return seconds_; }
  /// Bytes sent into all-reduce calls so far (this rank's contribution).
  uint64_t all_reduce_bytes() const { return all_reduce_bytes_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  DistributedOptions options_;
  double seconds_ = 0;
  uint64_t all_reduce_bytes_ = 0;
  uint64_t byte_records_ = 0;
};

/// Copies rank 0's parameters and buffers of `model` into every rank's.
void broadcast_model(const ModelRef& model, Communicator& comm);

/// Makes a `Trainer` data-parallel over `comm`'s ranks: broadcasts rank 0's
/// model and quantizer parameters and buffers now, and adds the gradient
/// hook that averages gradients (weighted by each rank's `Batch::share`)
/// and keeps the buffers identical. Must outlive the trainer's steps.
class DataParallel {
 public:
  /// Installs on `trainer` (which must outlive this object's use).
  DataParallel(Trainer& trainer, std::shared_ptr<Communicator> comm);
  /// The communicator.
  Communicator& communicator() { return *comm_; }
  /// Gradient bytes all-reduced per step, and the part of them that belongs
  /// to the quantizer's own parameters (bits logits, steps, centroids).
  uint64_t gradient_bytes() const { return gradient_bytes_; }
  /// See `gradient_bytes`.
  uint64_t quantizer_gradient_bytes() const { return quantizer_gradient_bytes_; }
  /// Seconds spent in the gradient hook (packing and all-reduce) so far.
  double seconds() const { return seconds_; }

 private:
  void synchronize(const std::vector<torch::Tensor>& parameters);

  Trainer& trainer_;
  std::shared_ptr<Communicator> comm_;
  std::vector<torch::Tensor> buffers_;
  uint64_t gradient_bytes_ = 0, quantizer_gradient_bytes_ = 0;
  double seconds_ = 0;
};

}  // namespace train
}  // namespace diffq
