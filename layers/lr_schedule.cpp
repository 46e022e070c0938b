// The learning-rate schedules of strata/layers/lr_schedule.h: one small class per
// schedule (closed forms written in PyTorch's order of operations, so that the doubles
// agree), their text form, and the parser that reads it back.
#include "strata/layers/lr_schedule.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numbers>
#include <set>
#include <utility>

#include "core/check.h"

namespace strata::lr {

namespace {

// Shortest text that reads back as the same double (std::to_chars guarantees it).
std::string number_text(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

template <typename T, typename Format>
std::string list_text(const std::vector<T>& values, Format format) {
  std::string text = "[";
  for (std::size_t i = 0; i < values.size(); ++i) text += (i > 0 ? "," : "") + format(values[i]);
  return text + "]";
}

std::string integers_text(const std::vector<std::int64_t>& values) {
  return list_text(values, [](std::int64_t v) { return std::to_string(v); });
}

std::string schedules_text(const std::vector<SchedulePtr>& schedules) {
  return list_text(schedules, [](const SchedulePtr& s) { return s->to_string(); });
}

void check_finite(double value, const char* schedule, const char* name) {
  STRATA_CHECK(std::isfinite(value), "{}: {} must be finite, got {}", schedule, name, value);
}

void check_unit_interval(double value, const char* schedule, const char* name) {
  STRATA_CHECK(value >= 0.0 && value <= 1.0, "{}: {} must be in [0, 1], got {}", schedule, name, value);
}

// Strictly increasing values >= minimum, named in the error.
void check_increasing(const std::vector<std::int64_t>& values, std::int64_t minimum, const char* schedule,
                      const char* name) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    STRATA_CHECK(values[i] >= minimum, "{}: {} must be at least {}, got {} at index {} of {}", schedule, name, minimum,
                 values[i], i, integers_text(values));
    STRATA_CHECK(i == 0 || values[i] > values[i - 1], "{}: {} must be strictly increasing, got {} after {} in {}",
                 schedule, name, values[i], values[i - 1], integers_text(values));
  }
}

void check_children(const std::vector<SchedulePtr>& schedules, const char* schedule) {
  STRATA_CHECK(!schedules.empty(), "{}: needs at least one schedule", schedule);
  for (std::size_t i = 0; i < schedules.size(); ++i) {
    STRATA_CHECK(schedules[i] != nullptr, "{}: schedule {} of {} is null", schedule, i, schedules.size());
  }
}

class ConstantSchedule final : public Schedule {
 public:
  explicit ConstantSchedule(const ConstantParams& params) : params_(params) {
    check_finite(params.factor, "constant_lr", "factor");
    check_unit_interval(params.factor, "constant_lr", "factor");
    STRATA_CHECK(params.total_iters >= 0, "constant_lr: total_iters must be >= 0, got {}", params.total_iters);
  }
  std::string to_string() const override {
    return "constant_lr(factor=" + number_text(params_.factor) + ",total_iters=" + std::to_string(params_.total_iters) +
           ")";
  }

 private:
  double factor_at(std::int64_t step) const override { return step < params_.total_iters ? params_.factor : 1.0; }
  ConstantParams params_;
};

class LinearSchedule final : public Schedule {
 public:
  explicit LinearSchedule(const LinearParams& params) : params_(params) {
    check_finite(params.start_factor, "linear_lr", "start_factor");
    check_finite(params.end_factor, "linear_lr", "end_factor");
    check_unit_interval(params.start_factor, "linear_lr", "start_factor");
    check_unit_interval(params.end_factor, "linear_lr", "end_factor");
    STRATA_CHECK(params.total_iters >= 1, "linear_lr: total_iters must be at least 1, got {}", params.total_iters);
  }
  std::string to_string() const override {
    return "linear_lr(start_factor=" + number_text(params_.start_factor) +
           ",end_factor=" + number_text(params_.end_factor) + ",total_iters=" + std::to_string(params_.total_iters) +
           ")";
  }

 private:
  double factor_at(std::int64_t step) const override {
    const auto progress = static_cast<double>(std::min(params_.total_iters, step));
    return params_.start_factor +
           (params_.end_factor - params_.start_factor) * progress / static_cast<double>(params_.total_iters);
  }
  LinearParams params_;
};

class StepSchedule final : public Schedule {
 public:
  explicit StepSchedule(const StepParams& params) : params_(params) {
    STRATA_CHECK(params.step_size >= 1, "step_lr: step_size must be at least 1, got {}", params.step_size);
    check_finite(params.gamma, "step_lr", "gamma");
  }
  std::string to_string() const override {
    return "step_lr(step_size=" + std::to_string(params_.step_size) + ",gamma=" + number_text(params_.gamma) + ")";
  }

 private:
  double factor_at(std::int64_t step) const override {
    return std::pow(params_.gamma, static_cast<double>(step / params_.step_size));
  }
  StepParams params_;
};

class MultiStepSchedule final : public Schedule {
 public:
  explicit MultiStepSchedule(const MultiStepParams& params) : params_(params) {
    check_increasing(params.milestones, 0, "multi_step_lr", "milestones");
    check_finite(params.gamma, "multi_step_lr", "gamma");
  }
  std::string to_string() const override {
    return "multi_step_lr(milestones=" + integers_text(params_.milestones) + ",gamma=" + number_text(params_.gamma) +
           ")";
  }

 private:
  double factor_at(std::int64_t step) const override {
    const auto passed = std::upper_bound(params_.milestones.begin(), params_.milestones.end(), step) -
                        params_.milestones.begin();
    return std::pow(params_.gamma, static_cast<double>(passed));
  }
  MultiStepParams params_;
};

class ExponentialSchedule final : public Schedule {
 public:
  explicit ExponentialSchedule(const ExponentialParams& params) : params_(params) {
    check_finite(params.gamma, "exponential_lr", "gamma");
  }
  std::string to_string() const override { return "exponential_lr(gamma=" + number_text(params_.gamma) + ")"; }

 private:
  double factor_at(std::int64_t step) const override { return std::pow(params_.gamma, static_cast<double>(step)); }
  ExponentialParams params_;
};

class CosineSchedule final : public Schedule {
 public:
  explicit CosineSchedule(const CosineParams& params) : params_(params) {
    STRATA_CHECK(params.t_max >= 1, "cosine_annealing_lr: t_max must be at least 1, got {}", params.t_max);
    check_finite(params.min_factor, "cosine_annealing_lr", "min_factor");
  }
  std::string to_string() const override {
    return "cosine_annealing_lr(t_max=" + std::to_string(params_.t_max) +
           ",min_factor=" + number_text(params_.min_factor) + ")";
  }

 private:
  double factor_at(std::int64_t step) const override {
    const double angle = std::numbers::pi * static_cast<double>(step) / static_cast<double>(params_.t_max);
    return params_.min_factor + (1.0 - params_.min_factor) * (1 + std::cos(angle)) / 2;
  }
  CosineParams params_;
};

class OneCycleSchedule final : public Schedule {
 public:
  explicit OneCycleSchedule(const OneCycleParams& params) : params_(params) {
    STRATA_CHECK(params.total_steps >= 1, "one_cycle_lr: total_steps must be at least 1, got {}", params.total_steps);
    check_finite(params.pct_start, "one_cycle_lr", "pct_start");
    check_unit_interval(params.pct_start, "one_cycle_lr", "pct_start");
    check_finite(params.div_factor, "one_cycle_lr", "div_factor");
    check_finite(params.final_div_factor, "one_cycle_lr", "final_div_factor");
    STRATA_CHECK(params.div_factor > 0.0 && params.final_div_factor > 0.0,
                 "one_cycle_lr: div_factor and final_div_factor must be positive, got {} and {}", params.div_factor,
                 params.final_div_factor);
    STRATA_CHECK(params.anneal == Anneal::cos || params.anneal == Anneal::linear,
                 "one_cycle_lr: unknown anneal strategy {}", static_cast<int>(params.anneal));
    const double initial = 1.0 / params.div_factor;
    const double minimum = initial / params.final_div_factor;
    const auto total = static_cast<double>(params.total_steps);
    // PyTorch's phases: the ends are float steps, pct_start * total_steps - 1 and so on.
    if (params.three_phase) {
      phases_ = {{params.pct_start * total - 1, initial, 1.0},
                 {2 * params.pct_start * total - 2, 1.0, initial},
                 {total - 1, initial, minimum}};
    } else {
      phases_ = {{params.pct_start * total - 1, initial, 1.0}, {total - 1, 1.0, minimum}};
    }
    // PyTorch divides by a phase's length: a phase that ends where the previous one ended
    // (or before step 0) would divide by zero or run backwards.
    double start = 0.0;
    for (std::size_t i = 0; i < phases_.size(); ++i) {
      STRATA_CHECK(phases_[i].end_step > start,
                   "one_cycle_lr: phase {} of {} would be empty (it ends at step {} after starting at {}); increase "
                   "total_steps ({}) or change pct_start ({})",
                   i + 1, phases_.size(), phases_[i].end_step, start, params.total_steps, params.pct_start);
      start = phases_[i].end_step;
    }
  }
  std::string to_string() const override {
    return "one_cycle_lr(total_steps=" + std::to_string(params_.total_steps) +
           ",pct_start=" + number_text(params_.pct_start) +
           ",anneal=" + (params_.anneal == Anneal::cos ? "cos" : "linear") +
           ",div_factor=" + number_text(params_.div_factor) +
           ",final_div_factor=" + number_text(params_.final_div_factor) +
           ",three_phase=" + (params_.three_phase ? "true" : "false") + ")";
  }

 private:
  struct Phase {
    double end_step;
    double start_factor;
    double end_factor;
  };

  double factor_at(std::int64_t step) const override {
    STRATA_CHECK(step <= params_.total_steps, "one_cycle_lr: step {} is past the end of the schedule ({} total steps)",
                 step, params_.total_steps);
    const auto position = static_cast<double>(step);
    double start = 0.0;
    for (std::size_t i = 0; i < phases_.size(); ++i) {
      const Phase& phase = phases_[i];
      if (position <= phase.end_step || i + 1 == phases_.size()) {
        const double pct = (position - start) / (phase.end_step - start);
        if (params_.anneal == Anneal::linear) return (phase.end_factor - phase.start_factor) * pct + phase.start_factor;
        const double cos_out = std::cos(std::numbers::pi * pct) + 1;
        return phase.end_factor + (phase.start_factor - phase.end_factor) / 2.0 * cos_out;
      }
      start = phase.end_step;
    }
    return 0.0;  // not reached: the last phase takes every remaining step
  }

  OneCycleParams params_;
  std::vector<Phase> phases_;
};

class PiecewiseLinearSchedule final : public Schedule {
 public:
  explicit PiecewiseLinearSchedule(const std::vector<Knot>& knots) : knots_(knots) {
    STRATA_CHECK(!knots.empty(), "piecewise_linear_lr: needs at least one knot (step, factor)");
    std::vector<std::int64_t> steps;
    for (const Knot& knot : knots) {
      steps.push_back(knot.step);
      check_finite(knot.factor, "piecewise_linear_lr", "every knot's factor");
    }
    check_increasing(steps, 0, "piecewise_linear_lr", "knot steps");
  }
  std::string to_string() const override {
    std::vector<std::int64_t> steps;
    std::vector<double> factors;
    for (const Knot& knot : knots_) {
      steps.push_back(knot.step);
      factors.push_back(knot.factor);
    }
    return "piecewise_linear_lr(steps=" + integers_text(steps) + ",factors=" + list_text(factors, number_text) + ")";
  }

 private:
  // numpy.interp's arithmetic: slope * (x - x_j) + y_j.
  double factor_at(std::int64_t step) const override {
    if (step <= knots_.front().step) return knots_.front().factor;
    if (step >= knots_.back().step) return knots_.back().factor;
    const auto after = std::upper_bound(knots_.begin(), knots_.end(), step,
                                        [](std::int64_t s, const Knot& knot) { return s < knot.step; });
    const Knot& left = *(after - 1);
    const Knot& right = *after;
    const double slope = (right.factor - left.factor) / static_cast<double>(right.step - left.step);
    return slope * static_cast<double>(step - left.step) + left.factor;
  }
  std::vector<Knot> knots_;
};

class SequentialSchedule final : public Schedule {
 public:
  SequentialSchedule(const std::vector<SchedulePtr>& schedules, const std::vector<std::int64_t>& milestones)
      : schedules_(schedules), milestones_(milestones) {
    check_children(schedules, "sequential_lr");
    STRATA_CHECK(milestones.size() + 1 == schedules.size(),
                 "sequential_lr: needs one milestone fewer than schedules, got {} schedules and milestones {}",
                 schedules.size(), integers_text(milestones));
    check_increasing(milestones, 1, "sequential_lr", "milestones");
  }
  std::string to_string() const override {
    return "sequential_lr(schedules=" + schedules_text(schedules_) + ",milestones=" + integers_text(milestones_) + ")";
  }

 private:
  double factor_at(std::int64_t step) const override {
    const auto index = std::upper_bound(milestones_.begin(), milestones_.end(), step) - milestones_.begin();
    const std::int64_t start = index == 0 ? 0 : milestones_[static_cast<std::size_t>(index - 1)];
    return schedules_[static_cast<std::size_t>(index)]->factor(step - start);
  }
  std::vector<SchedulePtr> schedules_;
  std::vector<std::int64_t> milestones_;
};

class ChainedSchedule final : public Schedule {
 public:
  explicit ChainedSchedule(const std::vector<SchedulePtr>& schedules) : schedules_(schedules) {
    check_children(schedules, "chained_lr");
  }
  std::string to_string() const override { return "chained_lr(schedules=" + schedules_text(schedules_) + ")"; }

 private:
  double factor_at(std::int64_t step) const override {
    double product = 1.0;
    for (const SchedulePtr& schedule : schedules_) product *= schedule->factor(step);
    return product;
  }
  std::vector<SchedulePtr> schedules_;
};

// ---- Parsing the text form -----------------------------------------------------------

// A parsed value: a word (number or name), a [list], or a call name(key=value, ...).
struct Value {
  enum class Kind : std::uint8_t { word, list, call };
  Kind kind = Kind::word;
  std::size_t position = 0;  // in the text, for errors
  std::string word;          // word, or the name of a call
  std::vector<Value> items;  // list
  std::vector<std::pair<std::string, Value>> arguments;  // call
};

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Value parse_text() {
    Value value = parse_value();
    skip_spaces();
    if (position_ != text_.size()) fail(position_, "unexpected text after the schedule");
    if (value.kind != Value::Kind::call) fail(value.position, "expected a schedule such as step_lr(...)");
    return value;
  }

  [[noreturn]] void fail(std::size_t position, const std::string& what) const {
    strata::detail::throw_invalid_argument(
        __FILE__, __LINE__, fmt::format("parse_schedule: {} at character {} of \"{}\"", what, position, text_));
  }

 private:
  static bool is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '+' || c == '-';
  }

  void skip_spaces() {
    while (position_ < text_.size() && (text_[position_] == ' ' || text_[position_] == '\t')) ++position_;
  }

  bool accept(char c) {
    skip_spaces();
    if (position_ < text_.size() && text_[position_] == c) {
      ++position_;
      return true;
    }
    return false;
  }

  void expect(char c) {
    if (!accept(c)) fail(position_, std::string("expected '") + c + "'");
  }

  std::string parse_word() {
    skip_spaces();
    const std::size_t start = position_;
    while (position_ < text_.size() && is_word_char(text_[position_])) ++position_;
    if (start == position_) fail(start, "expected a name or a number");
    return std::string(text_.substr(start, position_ - start));
  }

  Value parse_value() {
    skip_spaces();
    Value value;
    value.position = position_;
    if (accept('[')) {
      value.kind = Value::Kind::list;
      if (accept(']')) return value;
      do {
        value.items.push_back(parse_value());
      } while (accept(','));
      expect(']');
      return value;
    }
    value.word = parse_word();
    if (!accept('(')) return value;
    value.kind = Value::Kind::call;
    if (accept(')')) return value;
    do {
      std::string key = parse_word();
      expect('=');
      value.arguments.emplace_back(std::move(key), parse_value());
    } while (accept(','));
    expect(')');
    return value;
  }

  std::string_view text_;
  std::size_t position_ = 0;
};

SchedulePtr build_schedule(const Value& call, const Parser& parser);

// The arguments of one call: each getter takes its key (which must be there, once); done()
// then refuses keys nobody asked for.
class Arguments {
 public:
  Arguments(const Value& call, const Parser& parser) : call_(call), parser_(parser) {
    std::set<std::string> seen;
    for (const auto& [key, value] : call.arguments) {
      if (!seen.insert(key).second) parser.fail(value.position, call.word + ": parameter '" + key + "' given twice");
    }
  }

  std::int64_t integer(const std::string& key) { return integer_of(take(key)); }
  double number(const std::string& key) { return number_of(take(key)); }
  std::string word(const std::string& key) {
    const Value& value = take(key);
    expect_kind(value, Value::Kind::word, "a name");
    return value.word;
  }
  bool boolean(const std::string& key) {
    const Value& value = take(key);
    expect_kind(value, Value::Kind::word, "true or false");
    if (value.word != "true" && value.word != "false") {
      parser_.fail(value.position, call_.word + ": expected true or false, got '" + value.word + "'");
    }
    return value.word == "true";
  }
  std::vector<std::int64_t> integers(const std::string& key) {
    std::vector<std::int64_t> values;
    for (const Value& item : list(key)) values.push_back(integer_of(item));
    return values;
  }
  std::vector<double> numbers(const std::string& key) {
    std::vector<double> values;
    for (const Value& item : list(key)) values.push_back(number_of(item));
    return values;
  }
  std::vector<SchedulePtr> schedules(const std::string& key) {
    std::vector<SchedulePtr> values;
    for (const Value& item : list(key)) {
      expect_kind(item, Value::Kind::call, "a schedule");
      values.push_back(build_schedule(item, parser_));
    }
    return values;
  }

  void done() const {
    for (const auto& [key, value] : call_.arguments) {
      if (taken_.count(key) == 0) parser_.fail(value.position, call_.word + ": unknown parameter '" + key + "'");
    }
  }

 private:
  const Value& take(const std::string& key) {
    for (const auto& [name, value] : call_.arguments) {
      if (name == key) {
        taken_.insert(key);
        return value;
      }
    }
    parser_.fail(call_.position, call_.word + ": missing parameter '" + key + "'");
  }

  const std::vector<Value>& list(const std::string& key) {
    const Value& value = take(key);
    expect_kind(value, Value::Kind::list, "a [list]");
    return value.items;
  }

  void expect_kind(const Value& value, Value::Kind kind, const char* what) const {
    if (value.kind != kind) parser_.fail(value.position, call_.word + ": expected " + what);
  }

  std::int64_t integer_of(const Value& value) const {
    expect_kind(value, Value::Kind::word, "an integer");
    std::int64_t result = 0;
    const char* end = value.word.data() + value.word.size();
    const auto [ptr, error] = std::from_chars(value.word.data(), end, result);
    if (error != std::errc() || ptr != end) {
      parser_.fail(value.position, call_.word + ": expected an integer, got '" + value.word + "'");
    }
    return result;
  }

  double number_of(const Value& value) const {
    expect_kind(value, Value::Kind::word, "a number");
    double result = 0.0;
    const char* end = value.word.data() + value.word.size();
    const auto [ptr, error] = std::from_chars(value.word.data(), end, result);
    if (error != std::errc() || ptr != end || !std::isfinite(result)) {
      parser_.fail(value.position, call_.word + ": expected a finite number, got '" + value.word + "'");
    }
    return result;
  }

  const Value& call_;
  const Parser& parser_;
  std::set<std::string> taken_;
};

SchedulePtr build_schedule(const Value& call, const Parser& parser) {
  Arguments arguments(call, parser);
  SchedulePtr schedule;
  const std::string& name = call.word;
  if (name == "constant_lr") {
    schedule = constant_lr({.factor = arguments.number("factor"), .total_iters = arguments.integer("total_iters")});
  } else if (name == "linear_lr") {
    schedule = linear_lr({.start_factor = arguments.number("start_factor"),
                          .end_factor = arguments.number("end_factor"),
                          .total_iters = arguments.integer("total_iters")});
  } else if (name == "step_lr") {
    schedule = step_lr({.step_size = arguments.integer("step_size"), .gamma = arguments.number("gamma")});
  } else if (name == "multi_step_lr") {
    schedule = multi_step_lr({.milestones = arguments.integers("milestones"), .gamma = arguments.number("gamma")});
  } else if (name == "exponential_lr") {
    schedule = exponential_lr({.gamma = arguments.number("gamma")});
  } else if (name == "cosine_annealing_lr") {
    schedule = cosine_annealing_lr({.t_max = arguments.integer("t_max"), .min_factor = arguments.number("min_factor")});
  } else if (name == "one_cycle_lr") {
    OneCycleParams params{.total_steps = arguments.integer("total_steps"), .pct_start = arguments.number("pct_start")};
    const std::string anneal = arguments.word("anneal");
    if (anneal != "cos" && anneal != "linear") {
      parser.fail(call.position, "one_cycle_lr: anneal must be cos or linear, got '" + anneal + "'");
    }
    params.anneal = anneal == "cos" ? Anneal::cos : Anneal::linear;
    params.div_factor = arguments.number("div_factor");
    params.final_div_factor = arguments.number("final_div_factor");
    params.three_phase = arguments.boolean("three_phase");
    schedule = one_cycle_lr(params);
  } else if (name == "piecewise_linear_lr") {
    const std::vector<std::int64_t> steps = arguments.integers("steps");
    const std::vector<double> factors = arguments.numbers("factors");
    if (steps.size() != factors.size()) {
      parser.fail(call.position, "piecewise_linear_lr: " + std::to_string(steps.size()) + " steps but " +
                                     std::to_string(factors.size()) + " factors");
    }
    std::vector<Knot> knots;
    for (std::size_t i = 0; i < steps.size(); ++i) knots.push_back({steps[i], factors[i]});
    schedule = piecewise_linear_lr(knots);
  } else if (name == "sequential_lr") {
    std::vector<SchedulePtr> schedules = arguments.schedules("schedules");
    schedule = sequential_lr(schedules, arguments.integers("milestones"));
  } else if (name == "chained_lr") {
    schedule = chained_lr(arguments.schedules("schedules"));
  } else {
    parser.fail(call.position, "unknown schedule '" + name + "'");
  }
  arguments.done();
  return schedule;
}

}  // namespace

double Schedule::factor(std::int64_t step) const {
  STRATA_CHECK(step >= 0, "{}: the step must be >= 0, got {}", to_string(), step);
  return factor_at(step);
}

SchedulePtr constant_lr(const ConstantParams& params) { return std::make_shared<ConstantSchedule>(params); }
SchedulePtr linear_lr(const LinearParams& params) { return std::make_shared<LinearSchedule>(params); }
SchedulePtr step_lr(const StepParams& params) { return std::make_shared<StepSchedule>(params); }
SchedulePtr multi_step_lr(const MultiStepParams& params) { return std::make_shared<MultiStepSchedule>(params); }
SchedulePtr exponential_lr(const ExponentialParams& params) { return std::make_shared<ExponentialSchedule>(params); }
SchedulePtr cosine_annealing_lr(const CosineParams& params) { return std::make_shared<CosineSchedule>(params); }
SchedulePtr one_cycle_lr(const OneCycleParams& params) { return std::make_shared<OneCycleSchedule>(params); }

SchedulePtr piecewise_linear_lr(const std::vector<Knot>& knots) {
  return std::make_shared<PiecewiseLinearSchedule>(knots);
}

SchedulePtr sequential_lr(const std::vector<SchedulePtr>& schedules, const std::vector<std::int64_t>& milestones) {
  return std::make_shared<SequentialSchedule>(schedules, milestones);
}

SchedulePtr chained_lr(const std::vector<SchedulePtr>& schedules) {
  return std::make_shared<ChainedSchedule>(schedules);
}

SchedulePtr parse_schedule(std::string_view text) {
  Parser parser(text);
  const Value call = parser.parse_text();
  return build_schedule(call, parser);
}

Scheduler::Scheduler(SchedulePtr schedule, std::int64_t steps_taken)
    : schedule_(std::move(schedule)), steps_taken_(steps_taken) {
  STRATA_CHECK(schedule_ != nullptr, "Scheduler: the schedule is null");
  STRATA_CHECK(steps_taken >= 0, "Scheduler: steps taken must be >= 0, got {}", steps_taken);
}

std::map<std::string, std::string> Scheduler::state_dict() const {
  return {{"schedule", schedule_->to_string()}, {"step", std::to_string(steps_taken_)}};
}

void Scheduler::load_state_dict(const std::map<std::string, std::string>& state) {
  std::string missing, extra;
  for (const char* key : {"schedule", "step"}) {
    if (state.count(key) == 0) missing += std::string(missing.empty() ? "" : ", ") + key;
  }
  for (const auto& [key, value] : state) {
    if (key != "schedule" && key != "step") extra += (extra.empty() ? "" : ", ") + key;
  }
  STRATA_CHECK(missing.empty() && extra.empty(),
               "Scheduler::load_state_dict: expected the keys schedule and step; missing: [{}], unexpected: [{}]",
               missing, extra);
  const std::string& step_text = state.at("step");
  std::int64_t steps_taken = 0;
  const char* end = step_text.data() + step_text.size();
  const auto [ptr, error] = std::from_chars(step_text.data(), end, steps_taken);
  STRATA_CHECK(error == std::errc() && ptr == end && steps_taken >= 0,
               "Scheduler::load_state_dict: step must be an integer >= 0, got \"{}\"", step_text);
  SchedulePtr schedule = parse_schedule(state.at("schedule"));
  schedule_ = std::move(schedule);
  steps_taken_ = steps_taken;
}

}  // namespace strata::lr
