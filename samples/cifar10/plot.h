// The training curves of a run as one self-contained SVG file: the loss (left panel) and the
// training accuracy with the test accuracies (right panel) against the step, with axes, ticks
// and labels. Hand-written SVG: no plotting dependency, and any browser shows it.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "metrics.h"

namespace cifar10 {

// Tick values for an axis over [low, high]: about target_count of them, at 1, 2 or 5 times
// a power of ten, covering the range (the first <= low, the last >= high).
std::vector<double> axis_ticks(double low, double high, int target_count);

std::string plot_svg(const RunMetrics& metrics);
// Writes plot_svg(metrics) atomically; throws std::runtime_error naming the file.
void write_plot(const RunMetrics& metrics, const std::filesystem::path& file);

}  // namespace cifar10
