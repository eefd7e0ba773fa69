// A rank of the distributed tests: trains a small MLP for a few steps with
// one method, as rank RANK of WORLD processes with per-process batch B (or,
// with WORLD = 1, one process with the combined batch), and saves every
// tensor the optimizers update.
//   dist_worker METHOD RANK WORLD PORT STEPS BATCH OUT
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/train/distributed.h"
#include "diffq/train/loop.h"

namespace {

struct Net : torch::nn::Module {
  Net() {
    a = register_module("a", torch::nn::Linear(16, 64));
    b = register_module("b", torch::nn::Linear(64, 64));
    c = register_module("c", torch::nn::Linear(64, 8));
  }
  torch::Tensor forward(const torch::Tensor& x) { return c(torch::relu(b(torch::relu(a(x))))); }
  torch::nn::Linear a{nullptr}, b{nullptr}, c{nullptr};
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 8) {
    std::cerr << "usage: dist_worker METHOD RANK WORLD PORT STEPS BATCH OUT\n";
    return 2;
  }
  try {
    const std::string method = argv[1];
    const int rank = std::atoi(argv[2]), world = std::atoi(argv[3]), port = std::atoi(argv[4]);
    const int64_t steps = std::atoll(argv[5]), batch = std::atoll(argv[6]);
    torch::set_num_threads(1);
    // Replicas start apart on purpose: rank 0's weights must reach everyone.
    torch::manual_seed(uint64_t(rank) * 1000 + 7);
    auto net = std::make_shared<Net>();
    torch::manual_seed(99);
    const int64_t examples = steps * batch * world;
    auto x = torch::randn({examples, 16});
    auto y = torch::randint(0, 8, {examples}, torch::kInt64);
    diffq::train::MethodOptions mo;
    mo.bits = 4;
    mo.min_size = 0;
    mo.group_size = 4;
    mo.penalty = 1.0;
    if (method == "quant-noise") mo.extra["p"] = "0.5";
    // Clipping by value must act on the averaged gradient: a bound that
    // clips many elements tells the two orders apart.
    if (method == "oneshot") mo.extra["clip_value"] = "0.002";
    diffq::train::Trainer trainer(net, diffq::train::TrainerOptions()
                                           .method(method)
                                           .method_options(mo)
                                           .lr(1e-3)
                                           .clip(1.0)
                                           .total_steps(steps)
                                           .seed(5));
    std::unique_ptr<diffq::train::DataParallel> parallel;
    if (world > 1) {
      auto comm = std::make_shared<diffq::train::Communicator>(
          diffq::train::DistributedOptions().rank(rank).world_size(world).master_port(port).timeout_seconds(60));
      parallel = std::make_unique<diffq::train::DataParallel>(trainer, comm);
    }
    diffq::train::LoopPlan plan{examples, batch, 1};
    plan.rank = rank;
    plan.world_size = world;
    diffq::train::Position position;
    diffq::train::LoopHooks hooks;
    hooks.batch = [&](const torch::Tensor& index, const diffq::train::Position&) {
      return diffq::train::Batch{x.index_select(0, index), y.index_select(0, index)};
    };
    diffq::train::run_epochs(trainer, plan, position, hooks);
    std::vector<torch::Tensor> out;
    for (const auto& t : trainer.parameters()) out.push_back(t.detach().clone());
    torch::save(out, argv[7]);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "dist_worker: " << e.what() << "\n";
    return 1;
  }
}
