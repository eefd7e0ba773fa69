// Model files with torch models: save, restore without the quantizer,
// TorchScript write-back, and refusal of corrupt files.
#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "diffq/diffq.h"
#include "test_util.h"

using namespace diffq;

namespace {
std::string temp(const std::string& name) {
  return ::testing::TempDir() + "/" + std::to_string(::getpid()) + "_" + name;
}
}  // namespace

TEST(ModelFile, SaveAndRestoreEveryMethodAndCoding) {
  for (auto coding : {EntropyCoding::kNone, EntropyCoding::kRans, EntropyCoding::kZstd}) {
    torch::manual_seed(0);
    diffq_test::SpecCnn cnn, fresh;
    std::vector<std::unique_ptr<Quantizer>> quantizers;
    for (int method = 0; method < 3; ++method) {
      std::unique_ptr<Quantizer> q;
      if (method == 0) q = std::make_unique<DiffQuantizer>(cnn, DiffQOptions().group_size(8));
      if (method == 1) q = std::make_unique<UniformQuantizer>(cnn, UniformOptions().bits(3));
      if (method == 2) q = std::make_unique<LSQQuantizer>(cnn, LSQOptions().bits(4));
      std::vector<torch::Tensor> expected;
      {
        auto scope = q->quantized_evaluation();
        expected = diffq_test::snapshot(*cnn);
      }
      const auto path = temp("model.dq");
      const uint64_t bytes = save_model(*q, path, SaveOptions().entropy_coding(coding));
      // The file is close to the true size: a few KiB of header and alignment.
      EXPECT_LT(static_cast<double>(bytes), q->true_model_size() * 1048576 * 1.02 + 8192);
      restore_file(fresh, path);
      EXPECT_TRUE(diffq_test::same_bits(*fresh, expected)) << "method " << method;
      std::remove(path.c_str());
    }
  }
}

TEST(ModelFile, CorruptFileLeavesModelUntouched) {
  diffq_test::SpecCnn cnn, target;
  DiffQuantizer q(cnn, DiffQOptions().group_size(8));
  const auto path = temp("corrupt.dq");
  save_model(q, path);
  {
    // Flip every bit of one byte (writing a constant left the file intact
    // whenever that byte already held it: a 1-in-256 flaky failure).
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(-100, std::ios::end);
    const char byte = static_cast<char>(file.get());
    file.seekp(-100, std::ios::end);
    file.put(static_cast<char>(~byte));
  }
  const auto before = diffq_test::snapshot(*target);
  try {
    restore_file(target, path);
    ADD_FAILURE() << "corrupt file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(diffq_test::same_bits(*target, before));
  std::remove(path.c_str());
}

TEST(ModelFile, RestoreToTorchScript) {
  torch::manual_seed(2);
  torch::jit::Module net("Net");
  net.register_parameter("weight", torch::randn({64, 64}), false);
  net.define(R"JIT(
def forward(self, x):
    return torch.matmul(x, self.weight.t())
)JIT");
  const auto script = temp("net.pt"), file = temp("net.dq"), out = temp("net_restored.pt");
  net.save(script);
  auto loaded = torch::jit::load(script);
  auto x = torch::randn({4, 64});
  torch::Tensor expected;
  {
    UniformQuantizer q(loaded, UniformOptions().bits(4));
    {
      auto scope = q.quantized_evaluation();
      expected = loaded.forward({x}).toTensor();
    }
    save_model(q, file);
  }
  restore_to_torchscript(script, file, out);
  auto restored = torch::jit::load(out);
  EXPECT_TRUE(torch::equal(restored.forward({x}).toTensor(), expected));
  try {
    restore_to_torchscript(temp("missing.pt"), file, out);
    ADD_FAILURE() << "missing TorchScript file accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.pt"), std::string::npos) << e.what();
  }
  for (const auto& p : {script, file, out}) std::remove(p.c_str());
}
