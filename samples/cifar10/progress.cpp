#include "progress.h"

namespace cifar10 {

std::string format_progress(const Progress& progress) {
  char text[200];
  std::snprintf(text, sizeof text, "epoch %2d/%d  step %5lld/%lld  %7.0f img/s  loss %.4f  train acc %5.1f%%  %.1f s",
                progress.epoch + 1, progress.epochs, static_cast<long long>(progress.step),
                static_cast<long long>(progress.total_steps), progress.images_per_second, progress.loss,
                100 * progress.train_accuracy, progress.elapsed_seconds);
  return text;
}

void ProgressLine::update(const Progress& progress) {
  if (interactive_) {
    // \033[K clears what a longer previous line left to the right.
    std::fprintf(out_, "\r%s\033[K", format_progress(progress).c_str());
    line_open_ = true;
  } else {
    std::fprintf(out_, "%s\n", format_progress(progress).c_str());
  }
  std::fflush(out_);
}

void ProgressLine::keep() {
  if (line_open_) std::fputc('\n', out_);
  line_open_ = false;
  std::fflush(out_);
}

void ProgressLine::message(const std::string& text) {
  keep();
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

}  // namespace cifar10
