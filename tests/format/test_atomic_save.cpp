// Saving is atomic: a writer killed at random points leaves the destination
// either absent, the old file or the new one, and temporaries do not pile up.
#include <gtest/gtest.h>
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "diffq/error.h"
#include "diffq/format.h"
#include "state_factory.h"

namespace {

using namespace diffq_test;

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  return names;
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string make_dir(const std::string& name) {
  const std::string dir = testing::TempDir() + "/" + name + "." + std::to_string(getpid());
  for (const auto& f : list_dir(dir)) std::remove((dir + "/" + f).c_str());
  ::rmdir(dir.c_str());
  EXPECT_EQ(::mkdir(dir.c_str(), 0755), 0);
  return dir;
}

diffq::QuantizedState large_state(uint32_t seed) {
  std::mt19937 rng(seed);
  diffq::QuantizedState state;
  state.method = seed % 2 ? "odd" : "even";
  state.tensors.push_back(float32_record("big", {1 << 22}, rng));
  state.tensors.push_back(diffq_record("q", {1 << 20}, 16, {3, 4, 8}, rng));
  return state;
}

TEST(AtomicSave, KilledWriterNeverLeavesAHalfWrittenFile) {
  const std::string dir = make_dir("diffq_atomic");
  const std::string path = dir + "/model.dq";
  const auto options = diffq::SaveOptions().creation_time(1000).threads(1);
  const diffq::QuantizedState a = large_state(1), b = large_state(2);
  const std::vector<uint8_t> bytes_a = diffq::serialize(a, options);
  const std::vector<uint8_t> bytes_b = diffq::serialize(b, options);
  diffq::save(a, path, options);  // the old file
  std::mt19937 rng(99);
  for (int trial = 0; trial < 8; ++trial) {
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      for (int i = 0; i < 1000; ++i) diffq::save(i % 2 ? b : a, path, options);
      _exit(0);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 400));
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the writer should have been killed mid-way";
    const std::vector<uint8_t> now = read_all(path);
    EXPECT_TRUE(now == bytes_a || now == bytes_b) << "trial " << trial << ": " << now.size()
                                                   << " bytes";
    EXPECT_NO_THROW(diffq::load(path));
    // At most the killed writer's temporary remains: earlier ones were
    // removed by the next writer.
    int temporaries = 0;
    for (const auto& name : list_dir(dir)) temporaries += name != "model.dq";
    EXPECT_LE(temporaries, 1) << "trial " << trial;
  }
  diffq::remove_stale_temporaries(path);
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"model.dq"});
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

TEST(AtomicSave, FailedSaveLeavesNoTemporaryAndKeepsDestination) {
  const std::string dir = make_dir("diffq_atomic_fail");
  EXPECT_THROW(diffq::save(mixed_state(1), dir + "/missing/model.dq"), diffq::Error);
  // Destination is a non-empty directory: rename fails.
  const std::string target = dir + "/model.dq";
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  const std::string inside = target + "/keep";
  std::fclose(std::fopen(inside.c_str(), "w"));
  EXPECT_THROW(diffq::save(mixed_state(1), target), diffq::Error);
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"model.dq"});
  EXPECT_EQ(list_dir(target), std::vector<std::string>{"keep"});
  std::remove(inside.c_str());
  ::rmdir(target.c_str());
  ::rmdir(dir.c_str());
}

TEST(AtomicSave, OverwritesAnExistingFile) {
  const std::string dir = make_dir("diffq_atomic_over");
  const std::string path = dir + "/m.dq";
  diffq::save(mixed_state(1), path);
  diffq::save(mixed_state(2), path);
  expect_identical(mixed_state(2), diffq::load(path));
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"m.dq"});
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
