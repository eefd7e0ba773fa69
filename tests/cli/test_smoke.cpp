// End-to-end smoke test on real Fashion-MNIST: a few thousand images, a
// short DiffQ training, accuracy clearly above chance (10 %).
#include <gtest/gtest.h>

#include <filesystem>

#include "diffq/data/fashion_mnist.h"
#include "diffq/train/trainer.h"
#include "test_util_cli.h"

TEST(Smoke, DiffQOnRealFashionMnist) {
  const std::string dir = diffq::data::kFashionMnistDir;
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "dataset-fashion-mnist not installed";
  diffq::train::TrainConfig c;
  c.model.name = "cnn";
  c.method = "diffq";
  c.method_options.group_size = 8;
  c.data.train_limit = 4000;
  c.data.test_limit = 1000;
  c.epochs = 2;
  c.batch_size = 64;
  c.progress = "none";
  c.out_dir = cli_test::temp_dir("smoke");
  const auto r = diffq::train::run_training(c);
  const double accuracy = r.metrics["accuracy"];
  EXPECT_GT(accuracy, 70.0);
  EXPECT_LT(r.metrics["true_mib"].get<double>(), r.metrics["fp32_mib"].get<double>() / 3);
  std::printf("smoke: accuracy %.2f %%, true %.4f MiB, %.1f s training\n", accuracy,
              r.metrics["true_mib"].get<double>(), r.metrics["train_seconds"].get<double>());
}
