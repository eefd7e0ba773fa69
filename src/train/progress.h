#pragma once
// Progress display of the trainer: a live bar on a terminal, plain lines
// otherwise (private to the tool's library).
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "diffq/error.h"

namespace diffq {
namespace train {

class Progress {
 public:
  Progress(const std::string& mode, std::ostream& out, bool lm) : out_(out), lm_(lm) {
    if (mode == "auto") {
      const bool tty = (&out == &std::cerr && ::isatty(2)) || (&out == &std::cout && ::isatty(1));
      mode_ = tty ? kBar : kPlain;
    } else if (mode == "bar") {
      mode_ = kBar;
    } else if (mode == "plain") {
      mode_ = kPlain;
    } else if (mode == "none") {
      mode_ = kNone;
    } else {
      throw ::diffq::Error("--progress must be auto, bar, plain or none");
    }
  }
  ~Progress() { finish_line(); }

  void message(const std::string& text) {
    if (mode_ == kNone) return;
    finish_line();
    out_ << text << "\n" << std::flush;
  }

  void start_epoch(int64_t epoch, int64_t epochs, int64_t steps, int64_t first_step) {
    epoch_ = epoch;
    epochs_ = epochs;
    steps_ = steps;
    first_ = first_step;
    start_ = std::chrono::steady_clock::now();
    last_draw_ = start_ - std::chrono::seconds(1);
    every_ = std::max<int64_t>(1, steps / 10);
  }

  void update(int64_t step, double loss, double acc, double bits) {
    if (mode_ == kNone) return;
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    const double per_step = step > first_ ? elapsed / double(step - first_) : 0.0;
    const double eta = per_step * double(steps_ - step);
    char stats[160];
    if (lm_)
      std::snprintf(stats, sizeof stats, "loss %.3f ppl %.1f bits %.2f", loss, std::exp(loss), bits);
    else
      std::snprintf(stats, sizeof stats, "loss %.3f acc %.1f%% bits %.2f", loss, 100.0 * acc, bits);
    if (mode_ == kBar) {
      if (step != steps_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
      last_draw_ = now;
      const int width = 24;
      const int filled = int(double(width) * double(step) / double(steps_));
      std::string bar(size_t(filled), '#');
      bar.resize(size_t(width), '.');
      char line[320];
      std::snprintf(line, sizeof line, "\repoch %lld/%lld [%s] %3d%% %lld/%lld ETA %s %s\033[K",
                    (long long)(epoch_ + 1), (long long)epochs_, bar.c_str(),
                    int(100.0 * double(step) / double(steps_)), (long long)step, (long long)steps_,
                    clock(eta).c_str(), stats);
      out_ << line << std::flush;
      open_ = true;
    } else if (step % every_ == 0 || step == steps_) {
      char line[320];
      std::snprintf(line, sizeof line, "epoch %lld/%lld step %lld/%lld ETA %s %s",
                    (long long)(epoch_ + 1), (long long)epochs_, (long long)step, (long long)steps_,
                    clock(eta).c_str(), stats);
      out_ << line << "\n" << std::flush;
    }
  }

  void end_epoch(const nlohmann::json& line) {
    if (mode_ == kNone) return;
    finish_line();
    char text[320];
    if (lm_)
      std::snprintf(text, sizeof text,
                    "epoch %d done: train ppl %.2f, valid ppl %.2f (quantized), mean bits %.2f, "
                    "true size %.4f MiB, %.0f s",
                    line["epoch"].get<int>(), line["train_perplexity"].get<double>(),
                    line["valid_perplexity"].get<double>(), line["mean_bits"].get<double>(),
                    line["true_mib"].get<double>(), line["train_seconds"].get<double>());
    else
      std::snprintf(text, sizeof text,
                    "epoch %d done: train acc %.2f%%, test acc %.2f%% (quantized), mean bits %.2f, "
                    "true size %.4f MiB, %.0f s",
                    line["epoch"].get<int>(), line["train_accuracy"].get<double>(),
                    line["test_accuracy"].get<double>(), line["mean_bits"].get<double>(),
                    line["true_mib"].get<double>(), line["train_seconds"].get<double>());
    out_ << text << "\n" << std::flush;
  }

  void final_summary(const nlohmann::json& m) {
    if (mode_ == kNone) return;
    finish_line();
    char text[400];
    if (lm_)
      std::snprintf(text, sizeof text, "final: test perplexity %.2f, %.4f MiB true (%.1fx), file %llu bytes, mean bits %.2f",
                    m["perplexity"].get<double>(), m["true_mib"].get<double>(),
                    m["true_compression"].get<double>(), (unsigned long long)m["file_bytes"].get<uint64_t>(),
                    m["mean_bits"].get<double>());
    else
      std::snprintf(text, sizeof text, "final: test accuracy %.2f%%, %.4f MiB true (%.1fx), file %llu bytes, mean bits %.2f",
                    m["accuracy"].get<double>(), m["true_mib"].get<double>(),
                    m["true_compression"].get<double>(), (unsigned long long)m["file_bytes"].get<uint64_t>(),
                    m["mean_bits"].get<double>());
    out_ << text << "\n" << std::flush;
  }

  void finish_line() {
    if (open_) {
      out_ << "\n" << std::flush;
      open_ = false;
    }
  }

 private:
  static std::string clock(double seconds) {
    if (!std::isfinite(seconds) || seconds < 0) seconds = 0;
    const long s = long(seconds + 0.5);
    char b[32];
    if (s >= 3600) std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else std::snprintf(b, sizeof b, "%ld:%02ld", s / 60, s % 60);
    return b;
  }
  enum Mode { kBar, kPlain, kNone };
  Mode mode_ = kPlain;
  std::ostream& out_;
  bool lm_;
  bool open_ = false;
  int64_t epoch_ = 0, epochs_ = 0, steps_ = 1, first_ = 0, every_ = 1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace train
}  // namespace diffq
