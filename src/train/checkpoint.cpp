// Trainer checkpoints: model, quantizer, optimizers, step and the caller's
// record, in one torch archive written atomically.
#include <cstring>

#include <torch/torch.h>

#include "diffq/error.h"
#include "diffq/train/loop.h"
#include "files.h"

namespace diffq {
namespace train {

namespace {

torch::Tensor string_tensor(const std::string& s) {
  auto t = torch::empty({int64_t(s.size())}, torch::kUInt8);
  if (!s.empty()) std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}

std::string tensor_string(const torch::Tensor& t) {
  auto c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), size_t(c.numel()));
}

// A fresh tensor per read: InputArchive::read set_()s a defined tensor,
// which would reinterpret the storage under the old dtype.
torch::Tensor read_tensor(torch::serialize::InputArchive& a, const std::string& key) {
  torch::Tensor fresh;
  a.read(key, fresh);
  return fresh;
}

}  // namespace

void Trainer::save_checkpoint(const std::string& path, const nlohmann::json& extra) const {
  torch::serialize::OutputArchive a;
  a.write("extra", string_tensor(extra.dump()));
  a.write("global_step", torch::tensor({global_step_}, torch::kInt64));
  a.write("size_penalty", torch::tensor({lambda_}, torch::kFloat64));
  for (const auto& p : model_.ref.parameters()) a.write("model." + p.name, p.tensor.detach());
  for (const auto& b : model_.ref.buffers()) a.write("buffer." + b.name, b.tensor.detach());
  if (quantizer_) {
    const auto own = quantizer_->parameters();
    for (size_t i = 0; i < own.size(); ++i) a.write("own." + std::to_string(i), own[i].detach());
  }
  torch::serialize::OutputArchive oa;
  optimizer_->save(oa);
  a.write("optimizer", oa);
  if (own_optimizer_) {
    torch::serialize::OutputArchive ob;
    own_optimizer_->save(ob);
    a.write("own_optimizer", ob);
  }
  const std::string tmp = temporary_name(path);
  a.save_to(tmp);
  commit_file(tmp, path);
}

nlohmann::json Trainer::load_checkpoint(const std::string& path) {
  torch::serialize::InputArchive a;
  try {
    a.load_from(path);
  } catch (const std::exception& e) {
    throw Error("cannot read the checkpoint '" + path + "': " + e.what());
  }
  try {
    auto extra = nlohmann::json::parse(tensor_string(read_tensor(a, "extra")));
    // The quantizer's stream first, on the weights it started from (what it
    // cached from them, such as Quant-Noise's ranges, matches the original run).
    resume_at(read_tensor(a, "global_step").item<int64_t>());
    torch::Tensor lambda;
    if (a.try_read("size_penalty", lambda)) {
      lambda_ = lambda.item<double>();
      if (size_target_) size_target_->set_lambda(lambda_);
    }
    torch::NoGradGuard no_grad;
    for (auto& p : model_.ref.parameters()) p.tensor.copy_(read_tensor(a, "model." + p.name));
    for (auto& b : model_.ref.buffers()) b.tensor.copy_(read_tensor(a, "buffer." + b.name));
    if (quantizer_) {
      auto own = quantizer_->parameters();
      for (size_t i = 0; i < own.size(); ++i) own[i].copy_(read_tensor(a, "own." + std::to_string(i)));
    }
    torch::serialize::InputArchive oa;
    a.read("optimizer", oa);
    optimizer_->load(oa);
    if (own_optimizer_) {
      torch::serialize::InputArchive ob;
      a.read("own_optimizer", ob);
      own_optimizer_->load(ob);
    }
    return extra;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("the checkpoint '" + path + "' does not fit this model and method: " +
                std::string(e.what()).substr(0, 300));
  }
}

}  // namespace train
}  // namespace diffq
