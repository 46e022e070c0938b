#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include "text_files.h"

namespace cifar10 {

namespace {

constexpr double kWidth = 960, kHeight = 440;
constexpr double kPanelWidth = 380, kPanelHeight = 300, kPanelTop = 70;
constexpr double kLeftPanelX = 80, kRightPanelX = 550;

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof text, pattern, value);
  return text;
}

std::string escape_xml(const std::string& text) {
  std::string escaped;
  for (const char c : text) {
    switch (c) {
      case '&': escaped += "&amp;"; break;
      case '<': escaped += "&lt;"; break;
      case '>': escaped += "&gt;"; break;
      case '"': escaped += "&quot;"; break;
      default: escaped += c;
    }
  }
  return escaped;
}

// A tick label without trailing zeros: 0.5, 1, 2.5, 1000.
std::string tick_label(double value, double tick_step) {
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(tick_step) - 1e-9)));
  char pattern[16];
  std::snprintf(pattern, sizeof pattern, "%%.%df", decimals);
  return format(pattern, std::abs(value) < tick_step * 1e-6 ? 0.0 : value);
}

struct Series {
  std::vector<std::pair<double, double>> points;  // (step, value)
  std::string colour;
  std::string label;
  bool line = true;  // else markers
};

// Where a panel's legend goes: the corner its curves leave free (a falling loss leaves the
// top right, a rising accuracy the bottom right).
enum class LegendCorner { top_right, bottom_right };
constexpr double kLegendWidth = 190, kLegendLine = 16;

// One panel: a frame, grid lines and tick labels on both axes, the series, a legend.
class Panel {
 public:
  Panel(double x, std::string title, std::string y_label, double x_max, double y_low, double y_high,
        LegendCorner legend)
      : x_(x), title_(std::move(title)), y_label_(std::move(y_label)), legend_(legend) {
    x_ticks_ = axis_ticks(0, std::max(x_max, 1.0), 6);
    y_ticks_ = axis_ticks(y_low, y_high, 5);
  }

  std::string svg(const std::vector<Series>& series) const {
    std::string out = "<g font-family=\"sans-serif\" font-size=\"12\">\n";
    out += text(x_ + kPanelWidth / 2, kPanelTop - 12, title_, "middle", "font-size=\"14\" font-weight=\"bold\"");
    for (const double tick : x_ticks_) {
      const double x = to_x(tick);
      out += line(x, kPanelTop, x, kPanelTop + kPanelHeight, "#e0e0e0");
      out += text(x, kPanelTop + kPanelHeight + 16, tick_label(tick, x_ticks_[1] - x_ticks_[0]), "middle");
    }
    for (const double tick : y_ticks_) {
      const double y = to_y(tick);
      out += line(x_, y, x_ + kPanelWidth, y, "#e0e0e0");
      out += text(x_ - 6, y + 4, tick_label(tick, y_ticks_[1] - y_ticks_[0]), "end");
    }
    out += "<rect x=\"" + format("%.1f", x_) + "\" y=\"" + format("%.1f", kPanelTop) + "\" width=\"" +
           format("%.1f", kPanelWidth) + "\" height=\"" + format("%.1f", kPanelHeight) +
           "\" fill=\"none\" stroke=\"#404040\"/>\n";
    out += text(x_ + kPanelWidth / 2, kPanelTop + kPanelHeight + 36, "step", "middle");
    const double label_y = kPanelTop + kPanelHeight / 2;
    out += "<text x=\"" + format("%.1f", x_ - 50) + "\" y=\"" + format("%.1f", label_y) +
           "\" text-anchor=\"middle\" transform=\"rotate(-90 " + format("%.1f", x_ - 50) + ' ' +
           format("%.1f", label_y) + ")\">" + escape_xml(y_label_) + "</text>\n";
    std::vector<const Series*> shown;
    for (const Series& one : series) {
      if (one.points.empty()) continue;
      shown.push_back(&one);
      out += one.line ? polyline(one) : markers(one);
    }
    const double legend_x = x_ + kPanelWidth - kLegendWidth;
    double legend_y = legend_ == LegendCorner::top_right
                          ? kPanelTop + kLegendLine
                          : kPanelTop + kPanelHeight - kLegendLine * static_cast<double>(shown.size()) + 8;
    for (const Series* one : shown) {
      out += line(legend_x, legend_y - 4, legend_x + 20, legend_y - 4, one->colour, 2);
      out += text(legend_x + 26, legend_y, one->label, "start");
      legend_y += kLegendLine;
    }
    const bool any_points = !shown.empty();
    if (!any_points) out += text(x_ + kPanelWidth / 2, label_y, "no data", "middle", "fill=\"#808080\"");
    return out + "</g>\n";
  }

 private:
  double to_x(double step) const {
    return x_ + kPanelWidth * (step - x_ticks_.front()) / (x_ticks_.back() - x_ticks_.front());
  }
  double to_y(double value) const {
    const double clamped = std::clamp(value, y_ticks_.front(), y_ticks_.back());
    return kPanelTop + kPanelHeight * (1 - (clamped - y_ticks_.front()) / (y_ticks_.back() - y_ticks_.front()));
  }
  static std::string line(double x1, double y1, double x2, double y2, const std::string& colour, double width = 1) {
    return "<line x1=\"" + format("%.1f", x1) + "\" y1=\"" + format("%.1f", y1) + "\" x2=\"" + format("%.1f", x2) +
           "\" y2=\"" + format("%.1f", y2) + "\" stroke=\"" + colour + "\" stroke-width=\"" + format("%g", width) +
           "\"/>\n";
  }
  static std::string text(double x, double y, const std::string& content, const char* anchor,
                          const std::string& attributes = "") {
    return "<text x=\"" + format("%.1f", x) + "\" y=\"" + format("%.1f", y) + "\" text-anchor=\"" + anchor + "\"" +
           (attributes.empty() ? "" : " " + attributes) + ">" + escape_xml(content) + "</text>\n";
  }
  std::string polyline(const Series& series) const {
    std::string points;
    for (const auto& [step, value] : series.points) {
      points += format("%.1f", to_x(step)) + ',' + format("%.1f", to_y(value)) + ' ';
    }
    if (!points.empty()) points.pop_back();
    return "<polyline fill=\"none\" stroke=\"" + series.colour + "\" stroke-width=\"1.5\" points=\"" + points +
           "\"/>\n";
  }
  std::string markers(const Series& series) const {
    std::string out;
    for (const auto& [step, value] : series.points) {
      out += "<circle cx=\"" + format("%.1f", to_x(step)) + "\" cy=\"" + format("%.1f", to_y(value)) +
             "\" r=\"3.5\" fill=\"" + series.colour + "\"/>\n";
    }
    return out;
  }

  double x_;
  std::string title_, y_label_;
  LegendCorner legend_;
  std::vector<double> x_ticks_, y_ticks_;
};

}  // namespace

std::vector<double> axis_ticks(double low, double high, int target_count) {
  if (!(high > low)) high = low + 1;  // a flat or empty range still gets an axis
  const double rough = (high - low) / std::max(target_count, 1);
  const double power = std::pow(10.0, std::floor(std::log10(rough)));
  double step = power;
  for (const double factor : {1.0, 2.0, 5.0, 10.0}) {
    step = factor * power;
    if (step >= rough) break;
  }
  std::vector<double> ticks;
  const double first = std::floor(low / step) * step;
  for (int i = 0;; ++i) {
    ticks.push_back(first + i * step);
    if (ticks.back() >= high - step * 1e-9) break;
  }
  if (ticks.size() < 2) ticks.push_back(ticks.back() + step);
  return ticks;
}

std::string plot_svg(const RunMetrics& metrics) {
  const RunSummary& summary = metrics.summary;
  Series loss{{}, "#1f77b4", "training loss", true};
  Series train_accuracy{{}, "#1f77b4", "training accuracy", true};
  Series test_accuracy{{}, "#ff7f0e", "test accuracy (epoch ends)", false};
  Series final_accuracy{{}, "#2ca02c", "final test accuracy", false};
  double max_loss = 0;
  for (const StepRecord& row : metrics.steps) {
    // A diverged run's NaN losses are left out: they have no place on an axis.
    if (std::isfinite(row.loss)) {
      loss.points.emplace_back(static_cast<double>(row.step), row.loss);
      max_loss = std::max(max_loss, row.loss);
    }
    train_accuracy.points.emplace_back(static_cast<double>(row.step), 100 * row.train_accuracy);
  }
  for (const EpochRecord& row : metrics.epochs) {
    if (row.test_accuracy) test_accuracy.points.emplace_back(static_cast<double>(row.step), 100 * *row.test_accuracy);
  }
  const double best_final = std::max(summary.test_accuracy, summary.test_accuracy_tta.value_or(0));
  if (summary.steps > 0) final_accuracy.points.emplace_back(static_cast<double>(summary.steps), 100 * best_final);
  const double x_max = static_cast<double>(std::max(summary.steps, summary.total_steps));

  std::string title = "CIFAR-10, " + summary.net + ": test accuracy " + format("%.2f%%", 100 * summary.test_accuracy);
  if (summary.test_accuracy_tta) title += format(" (%.2f%% with TTA)", 100 * *summary.test_accuracy_tta);
  title += format(" after %.1f s", summary.training_seconds);
  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + format("%.0f", kWidth) + "\" height=\"" +
         format("%.0f", kHeight) + "\" viewBox=\"0 0 " + format("%.0f", kWidth) + ' ' + format("%.0f", kHeight) +
         "\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += "<text x=\"" + format("%.0f", kWidth / 2) +
         "\" y=\"24\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"16\">" + escape_xml(title) +
         "</text>\n";
  svg += Panel(kLeftPanelX, "loss", "loss (mean per image)", x_max, 0, std::max(max_loss, 0.1),
                LegendCorner::top_right)
             .svg({loss});
  svg += Panel(kRightPanelX, "accuracy", "accuracy (%)", x_max, 0, 100, LegendCorner::bottom_right)
             .svg({train_accuracy, test_accuracy, final_accuracy});
  return svg + "</svg>\n";
}

void write_plot(const RunMetrics& metrics, const std::filesystem::path& file) {
  write_text_file(file, plot_svg(metrics));
}

}  // namespace cifar10
