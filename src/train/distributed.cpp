// Data-parallel training on c10d (see include/diffq/train/distributed.h).
// The Torch package defines USE_C10D_GLOO and USE_DISTRIBUTED, which the
// Gloo process group's header needs.
#include "diffq/train/distributed.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/number_text.h"
#include "diffq/train/loop.h"

namespace diffq {
namespace train {

namespace {

using Clock = std::chrono::steady_clock;

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::chrono::milliseconds milliseconds(double seconds) {
  return std::chrono::milliseconds(int64_t(seconds * 1000.0));
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

// Consecutive runs of same-dtype tensors holding at most `limit` bytes
// (a tensor larger than the limit is a run of its own).
std::vector<std::pair<size_t, size_t>> buckets_of(const std::vector<torch::Tensor>& tensors, double limit) {
  std::vector<std::pair<size_t, size_t>> out;
  size_t begin = 0;
  double bytes = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const double b = double(tensors[i].numel()) * double(tensors[i].element_size());
    if (i > begin && (tensors[i].scalar_type() != tensors[begin].scalar_type() || bytes + b > limit)) {
      out.emplace_back(begin, i);
      begin = i;
      bytes = 0;
    }
    bytes += b;
  }
  if (begin < tensors.size()) out.emplace_back(begin, tensors.size());
  return out;
}

int environment_integer(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  const int64_t n = parse_integer(v, name);
  DIFFQ_CHECK(n >= 0 && n <= INT32_MAX, "the environment variable ", name, "=", v, " is out of range");
  return int(n);
}

}  // namespace

void check_distributed_options(const DistributedOptions& o) {
  DIFFQ_CHECK(o.world_size() >= 1, "the world size must be at least 1, not ", o.world_size());
  DIFFQ_CHECK(o.rank() >= 0 && o.rank() < o.world_size(), "the rank must be in [0, ", o.world_size(), "), not ",
              o.rank());
  DIFFQ_CHECK(o.master_port() >= 1 && o.master_port() <= 65535, "the master port must be in 1..65535, not ",
              o.master_port());
  DIFFQ_CHECK(!o.master_addr().empty(), "the master address is empty");
  DIFFQ_CHECK(o.timeout_seconds() > 0 && o.timeout_seconds() <= 86400 * 7,
              "the distributed timeout must be in (0, 604800] seconds, not ", o.timeout_seconds());
  DIFFQ_CHECK(o.bucket_mib() > 0 && o.bucket_mib() <= 1024, "the bucket size must be in (0, 1024] MiB, not ",
              o.bucket_mib());
}

DistributedOptions distributed_options_from_environment() {
  DistributedOptions o;
  o.rank(environment_integer("RANK", 0));
  o.world_size(environment_integer("WORLD_SIZE", 1));
  if (const char* a = std::getenv("MASTER_ADDR")) {
    if (*a) o.master_addr(a);
  }
  o.master_port(environment_integer("MASTER_PORT", o.master_port()));
  if (const char* i = std::getenv("GLOO_SOCKET_IFNAME")) o.interface(i);
  return o;
}

std::pair<std::string, int> parse_master(const std::string& text) {
  const auto colon = text.rfind(':');
  DIFFQ_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < text.size(),
              "the master must be ADDRESS:PORT (e.g. 10.0.0.1:29500), not '", text, "'");
  const int64_t port = parse_integer(text.substr(colon + 1), "the master port");
  DIFFQ_CHECK(port >= 1 && port <= 65535, "the master port must be in 1..65535, not ", port);
  std::string addr = text.substr(0, colon);
  if (addr.size() > 2 && addr.front() == '[' && addr.back() == ']') addr = addr.substr(1, addr.size() - 2);
  return {addr, int(port)};
}

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

namespace {

// Runs a collective, turning c10d's exceptions into one readable line.
template <typename F>
void collective(const DistributedOptions& o, const char* what, double& seconds, F&& f) {
  const auto t0 = Clock::now();
  try {
    f();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(std::string("distributed ") + what + " failed on rank " + std::to_string(o.rank()) + " of " +
                std::to_string(o.world_size()) + ": another process ended or did not answer within " +
                format_number(o.timeout_seconds()) + " s (" + first_line(e.what()) + ")");
  }
  seconds += std::chrono::duration<double>(Clock::now() - t0).count();
}

void wait(const c10::intrusive_ptr<c10d::Work>& work) { work->wait(); }

}  // namespace

Communicator::Communicator(DistributedOptions options) : impl_(new Impl), options_(std::move(options)) {
  check_distributed_options(options_);
  if (world_size() == 1) return;
  const auto& o = options_;
  try {
    c10d::TCPStoreOptions so;
    so.port = uint16_t(o.master_port());
    so.isServer = o.rank() == 0;
    so.numWorkers = size_t(o.world_size());
    so.waitWorkers = true;
    so.timeout = milliseconds(o.timeout_seconds());
    impl_->store = c10::make_intrusive<c10d::TCPStore>(o.master_addr(), so);
    auto go = c10d::ProcessGroupGloo::Options::create(milliseconds(o.timeout_seconds()));
    if (!o.interface().empty()) go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(o.interface()));
    else if (is_loopback(o.master_addr()))
      go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    go->threads = 1;
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, o.rank(), o.world_size(), go);
  } catch (const std::exception& e) {
    throw Error("distributed: rank " + std::to_string(o.rank()) + " of " + std::to_string(o.world_size()) +
                " could not meet the others at " + o.master_addr() + ":" + std::to_string(o.master_port()) +
                " within " + format_number(o.timeout_seconds()) + " s (" + first_line(e.what()) + ")");
  }
}

Communicator::~Communicator() = default;

void Communicator::all_reduce_sum(const std::vector<torch::Tensor>& tensors) {
  if (world_size() == 1 || tensors.empty()) return;
  torch::NoGradGuard no_grad;
  for (const auto& [begin, end] : buckets_of(tensors, options_.bucket_mib() * 1048576.0)) {
    std::vector<torch::Tensor> views;
    for (size_t i = begin; i < end; ++i) views.push_back(tensors[i].reshape(-1));
    std::vector<torch::Tensor> flat{end - begin == 1 && tensors[begin].is_contiguous() ? tensors[begin]
                                                                                         : torch::cat(views)};
    all_reduce_bytes_ += uint64_t(flat[0].numel() * flat[0].element_size());
    collective(options_, "all-reduce", seconds_, [&] { wait(impl_->group->allreduce(flat)); });
    if (flat[0].data_ptr() == tensors[begin].data_ptr()) continue;
    int64_t offset = 0;
    for (size_t i = begin; i < end; ++i) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(flat[0].slice(0, offset, offset + n).view(tensors[i].sizes()));
      offset += n;
    }
  }
}

void Communicator::broadcast(const std::vector<torch::Tensor>& tensors, int root) {
  if (world_size() == 1 || tensors.empty()) return;
  torch::NoGradGuard no_grad;
  for (const auto& [begin, end] : buckets_of(tensors, options_.bucket_mib() * 1048576.0)) {
    std::vector<torch::Tensor> views;
    for (size_t i = begin; i < end; ++i) views.push_back(tensors[i].reshape(-1));
    std::vector<torch::Tensor> flat{torch::cat(views)};
    c10d::BroadcastOptions bo;
    bo.rootRank = root;
    collective(options_, "broadcast", seconds_, [&] { wait(impl_->group->broadcast(flat, bo)); });
    int64_t offset = 0;
    for (size_t i = begin; i < end; ++i) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(flat[0].slice(0, offset, offset + n).view(tensors[i].sizes()));
      offset += n;
    }
  }
}

std::vector<double> Communicator::all_reduce_sum(std::vector<double> values) {
  if (world_size() == 1 || values.empty()) return values;
  auto t = torch::tensor(values, torch::kFloat64);
  std::vector<torch::Tensor> v{t};
  collective(options_, "all-reduce", seconds_, [&] { wait(impl_->group->allreduce(v)); });
  auto a = t.accessor<double, 1>();
  for (size_t i = 0; i < values.size(); ++i) values[i] = a[int64_t(i)];
  return values;
}

bool Communicator::any(bool flag) { return all_reduce_sum(std::vector<double>{flag ? 1.0 : 0.0})[0] > 0; }

std::string Communicator::broadcast_bytes(const std::string& bytes, int root) {
  if (world_size() == 1) return bytes;
  const std::string key = "diffq/bytes/" + std::to_string(byte_records_++);
  std::string out = bytes;
  collective(options_, "exchange", seconds_, [&] {
    if (rank() == root) {
      impl_->store->set(key, std::vector<uint8_t>(bytes.begin(), bytes.end()));
    } else {
      const auto v = impl_->store->get(key);
      out.assign(v.begin(), v.end());
    }
  });
  return out;
}

void Communicator::barrier() {
  if (world_size() == 1) return;
  collective(options_, "barrier", seconds_, [&] { wait(impl_->group->barrier()); });
}

void broadcast_model(const ModelRef& model, Communicator& comm) {
  std::vector<torch::Tensor> tensors;
  for (const auto& p : model.parameters()) tensors.push_back(p.tensor);
  for (const auto& b : model.buffers()) tensors.push_back(b.tensor);
  comm.broadcast(tensors);
}

DataParallel::DataParallel(Trainer& trainer, std::shared_ptr<Communicator> comm)
    : trainer_(trainer), comm_(std::move(comm)) {
  DIFFQ_CHECK(comm_ != nullptr, "DataParallel needs a communicator");
  for (const auto& b : trainer_.model().ref.buffers()) buffers_.push_back(b.tensor);
  std::vector<torch::Tensor> all = trainer_.parameters();
  all.insert(all.end(), buffers_.begin(), buffers_.end());
  comm_->broadcast(all);
  const size_t model_count = trainer_.parameters().size() - trainer_.quantizer_parameter_count();
  for (size_t i = 0; i < trainer_.parameters().size(); ++i) {
    const auto& p = trainer_.parameters()[i];
    const uint64_t bytes = uint64_t(p.numel() * p.element_size());
    gradient_bytes_ += bytes;
    if (i >= model_count) quantizer_gradient_bytes_ += bytes;
  }
  trainer_.add_gradient_hook([this](const std::vector<torch::Tensor>& parameters) { synchronize(parameters); });
}

void DataParallel::synchronize(const std::vector<torch::Tensor>& parameters) {
  if (comm_->world_size() == 1) return;
  const auto t0 = Clock::now();
  torch::NoGradGuard no_grad;
  const double share = trainer_.batch_share();
  // Which gradients exist on some rank: a tensor no rank reached keeps no
  // gradient (the optimizer skips it), as in a single process.
  auto reached = torch::zeros({int64_t(parameters.size())}, torch::kFloat32);
  std::vector<torch::Tensor> grads;
  for (size_t i = 0; i < parameters.size(); ++i) {
    auto p = parameters[i];
    if (p.grad().defined()) {
      reached[int64_t(i)] = 1.0f;
      p.mutable_grad().mul_(share);
    } else {
      p.mutable_grad() = torch::zeros_like(p);
    }
    grads.push_back(p.grad());
  }
  grads.push_back(reached);
  comm_->all_reduce_sum(grads);
  auto r = reached.accessor<float, 1>();
  for (size_t i = 0; i < parameters.size(); ++i)
    if (r[int64_t(i)] == 0.0f) parameters[i].mutable_grad() = torch::Tensor();
  comm_->broadcast(buffers_);
  seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace train
}  // namespace diffq
