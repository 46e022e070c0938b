// The live progress line of a training run: epoch, step, speed, loss, training accuracy and
// elapsed time. On a terminal one line is rewritten in place (\r) and each epoch leaves its
// last state behind; elsewhere (a log file, CI) every update is a line of its own.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace cifar10 {

struct Progress {
  int epoch = 0;  // from 0
  int epochs = 0;
  std::int64_t step = 0;  // steps done
  std::int64_t total_steps = 0;
  double images_per_second = 0;
  double loss = 0;
  double train_accuracy = 0;  // in [0, 1]
  double elapsed_seconds = 0;
};

// "epoch  3/10  step  120/480  52310 img/s  loss 1.2345  train acc  56.7%  12.3 s"
std::string format_progress(const Progress& progress);

class ProgressLine {
 public:
  // interactive: rewrite one line in place (a terminal); else print each update as a line.
  ProgressLine(std::FILE* out, bool interactive) : out_(out), interactive_(interactive) {}
  void update(const Progress& progress);
  // Leaves the current line as it is and starts a new one (the end of an epoch).
  void keep();
  // A message on a line of its own, after the progress line.
  void message(const std::string& text);

 private:
  std::FILE* out_;
  bool interactive_;
  bool line_open_ = false;
};

}  // namespace cifar10
