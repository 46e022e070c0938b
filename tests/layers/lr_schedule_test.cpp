// Learning-rate schedules: every schedule against PyTorch's learning rates
// (golden/lr_schedules.txt, each case named by the schedule text that reproduces it),
// exact values on small cases, composition, the text form read back bit for bit, exact
// resume through Scheduler's state, and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "strata/core/errors.h"
#include "strata/layers/lr_schedule.h"
#include "tests/support/golden.h"

namespace strata::lr {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

std::vector<double> factors(const Schedule& schedule, std::int64_t steps) {
  std::vector<double> values;
  for (std::int64_t step = 0; step < steps; ++step) values.push_back(schedule.factor(step));
  return values;
}

// PyTorch updates recursively and Strata evaluates the closed form: a few ulps apart.
TEST(LrSchedule, MatchesPyTorchGoldenValues) {
  const std::vector<testing::GoldenCase> cases = testing::read_golden("lr_schedules.txt");
  ASSERT_EQ(cases.size(), 17u);
  for (const testing::GoldenCase& golden : cases) {
    SCOPED_TRACE(golden.name);
    const SchedulePtr schedule = parse_schedule(golden.name);
    const double base_lr = golden.float_of("base_lr");
    const std::int64_t steps = golden.int_of("steps");
    for (std::int64_t step = 0; step < steps; ++step) {
      const double expected = golden.float_of("lr_" + std::to_string(step));
      EXPECT_NEAR(schedule->lr(step, base_lr), expected, 1e-15 * base_lr + 1e-12 * std::abs(expected))
          << "step " << step;
    }
  }
}

// Small cases whose factors are exact in binary floating point.
TEST(LrSchedule, ExactValuesOnSmallCases) {
  EXPECT_EQ(factors(*constant_lr({.factor = 0.5, .total_iters = 2}), 4), (std::vector<double>{0.5, 0.5, 1, 1}));
  EXPECT_EQ(factors(*linear_lr({.start_factor = 0.25, .end_factor = 1.0, .total_iters = 3}), 5),
            (std::vector<double>{0.25, 0.5, 0.75, 1, 1}));
  EXPECT_EQ(factors(*step_lr({.step_size = 2, .gamma = 0.5}), 6), (std::vector<double>{1, 1, 0.5, 0.5, 0.25, 0.25}));
  EXPECT_EQ(factors(*multi_step_lr({.milestones = {1, 3}, .gamma = 0.5}), 5),
            (std::vector<double>{1, 0.5, 0.5, 0.25, 0.25}));
  EXPECT_EQ(factors(*multi_step_lr({.milestones = {}, .gamma = 0.5}), 2), (std::vector<double>{1, 1}));
  EXPECT_EQ(factors(*exponential_lr({.gamma = 0.5}), 4), (std::vector<double>{1, 0.5, 0.25, 0.125}));
  // Cosine: the start, the middle (cos(pi/2) is 6e-17, lost in 1 + cos) and the trough.
  const SchedulePtr cosine = cosine_annealing_lr({.t_max = 4, .min_factor = 0.25});
  EXPECT_EQ(cosine->factor(0), 1.0);
  EXPECT_EQ(cosine->factor(2), 0.625);
  EXPECT_EQ(cosine->factor(4), 0.25);
  EXPECT_EQ(cosine->factor(8), 1.0);  // a whole period later
  // Knots: constant before and after, linear between.
  EXPECT_EQ(factors(*piecewise_linear_lr({{2, 0.5}, {4, 1.0}, {8, 0.0}}), 10),
            (std::vector<double>{0.5, 0.5, 0.5, 0.75, 1, 0.75, 0.5, 0.25, 0, 0}));
  EXPECT_EQ(factors(*piecewise_linear_lr({{3, 0.125}}), 5), (std::vector<double>(5, 0.125)));
}

// The airbench recipe: 0.2 -> 1 over the first fifth, then linearly to 0.
TEST(LrSchedule, TriangleRisesThenFallsToZero) {
  const std::int64_t total = 1000;
  const SchedulePtr triangle = piecewise_linear_lr({{0, 0.2}, {total / 5, 1.0}, {total, 0.0}});
  EXPECT_EQ(triangle->factor(0), 0.2);
  EXPECT_NEAR(triangle->factor(100), 0.6, 1e-15);
  EXPECT_EQ(triangle->factor(200), 1.0);
  EXPECT_NEAR(triangle->factor(600), 0.5, 1e-15);
  EXPECT_EQ(triangle->factor(total), 0.0);
  EXPECT_EQ(triangle->factor(total + 50), 0.0);
}

TEST(LrSchedule, OneCyclePhases) {
  // Linear, two phases: 1/div at 0, 1 at pct_start * total - 1 = 4, 1/(div * final_div) at total - 1.
  const SchedulePtr two = one_cycle_lr(
      {.total_steps = 10, .pct_start = 0.5, .anneal = Anneal::linear, .div_factor = 4.0, .final_div_factor = 2.0});
  EXPECT_EQ(factors(*two, 5), (std::vector<double>{0.25, 0.4375, 0.625, 0.8125, 1.0}));
  EXPECT_EQ(two->factor(9), 0.125);  // total_steps - 1
  EXPECT_NO_THROW(two->factor(10));  // total_steps: PyTorch's last value, past the end of the descent
  EXPECT_THAT([&] { two->factor(11); }, ThrowsMessage<InvalidArgument>(HasSubstr(
                                            "one_cycle_lr: step 11 is past the end of the schedule (10 total steps)")));
  // Cosine reaches the peak exactly at the first phase's end.
  const SchedulePtr peak = one_cycle_lr({.total_steps = 10, .pct_start = 0.5});
  EXPECT_EQ(peak->factor(4), 1.0);
  // PyTorch's end + (start - end) / 2 * (cos + 1) rounds 1/25 a few ulps off, and so do we.
  EXPECT_NEAR(peak->factor(0), 1.0 / 25, 1e-16);
  EXPECT_NEAR(peak->factor(9), 1.0 / 25 / 1e4, 1e-19);
}

TEST(LrSchedule, SequentialRestartsEachScheduleAtItsMilestone) {
  const SchedulePtr warmup = linear_lr({.start_factor = 0.1, .end_factor = 1.0, .total_iters = 5});
  const SchedulePtr decay = step_lr({.step_size = 3, .gamma = 0.5});
  const SchedulePtr tail = exponential_lr({.gamma = 0.9});
  const SchedulePtr sequence = sequential_lr({warmup, decay, tail}, {5, 11});
  for (std::int64_t step = 0; step < 20; ++step) {
    SCOPED_TRACE(step);
    const double expected =
        step < 5 ? warmup->factor(step) : (step < 11 ? decay->factor(step - 5) : tail->factor(step - 11));
    EXPECT_EQ(sequence->factor(step), expected);
  }
  EXPECT_EQ(sequential_lr({decay}, {})->factor(7), decay->factor(7));
}

TEST(LrSchedule, ChainedMultipliesTheFactors) {
  const SchedulePtr warmup = linear_lr({.start_factor = 0.2, .end_factor = 1.0, .total_iters = 4});
  const SchedulePtr decay = multi_step_lr({.milestones = {3, 6}, .gamma = 0.1});
  const SchedulePtr product = chained_lr({warmup, decay});
  for (std::int64_t step = 0; step < 10; ++step) {
    EXPECT_EQ(product->factor(step), warmup->factor(step) * decay->factor(step)) << "step " << step;
  }
  // Composites nest.
  const SchedulePtr nested = sequential_lr({product, cosine_annealing_lr({.t_max = 5})}, {10});
  EXPECT_EQ(nested->factor(9), product->factor(9));
  EXPECT_EQ(nested->factor(10), 1.0);
}

// Every kind, with parameters that have no short decimal form, prints and reads back to
// the same text and the same factors bit for bit.
TEST(LrSchedule, TextFormReadsBackExactly) {
  const std::vector<SchedulePtr> schedules = {
      constant_lr({.factor = 1.0 / 3, .total_iters = 7}),
      linear_lr({.start_factor = 0.1, .end_factor = 2.0 / 3, .total_iters = 9}),
      step_lr({.step_size = 4, .gamma = 0.7}),
      multi_step_lr({.milestones = {0, 5, 1000000000000}, .gamma = 1e-3}),
      exponential_lr({.gamma = 0.999}),
      cosine_annealing_lr({.t_max = 13, .min_factor = 1.0 / 7}),
      one_cycle_lr({.total_steps = 97, .pct_start = 0.3, .anneal = Anneal::cos, .three_phase = true}),
      one_cycle_lr({.total_steps = 50, .pct_start = 0.2, .anneal = Anneal::linear, .div_factor = 1e-5,
                    .final_div_factor = 1e300}),
      piecewise_linear_lr({{0, 0.2}, {193, 1.0}, {970, 5e-324}}),
      sequential_lr({linear_lr({.start_factor = 0.01, .total_iters = 3}),
                     chained_lr({cosine_annealing_lr({.t_max = 11}), exponential_lr({.gamma = 0.95})})},
                    {3}),
  };
  for (const SchedulePtr& schedule : schedules) {
    const std::string text = schedule->to_string();
    SCOPED_TRACE(text);
    const SchedulePtr parsed = parse_schedule(text);
    EXPECT_EQ(parsed->to_string(), text);
    EXPECT_EQ(factors(*parsed, 40), factors(*schedule, 40));
  }
  EXPECT_EQ(step_lr({.step_size = 30, .gamma = 0.1})->to_string(), "step_lr(step_size=30,gamma=0.1)");
  EXPECT_EQ(sequential_lr({constant_lr({.factor = 0.5, .total_iters = 2}), exponential_lr({.gamma = 0.5})}, {4})
                ->to_string(),
            "sequential_lr(schedules=[constant_lr(factor=0.5,total_iters=2),exponential_lr(gamma=0.5)],"
            "milestones=[4])");
  // Hand-written text may have spaces and any number spelling.
  EXPECT_EQ(parse_schedule(" multi_step_lr( milestones = [ 2 , 5 ] , gamma = 5e-1 ) ")->to_string(),
            "multi_step_lr(milestones=[2,5],gamma=0.5)");
}

// A run interrupted after k steps and resumed from its saved state gives the factors of a
// run that was never interrupted, bit for bit; the value at step k needs no replay.
TEST(LrSchedule, ResumeIsExact) {
  const SchedulePtr schedule = sequential_lr(
      {linear_lr({.start_factor = 0.1, .total_iters = 7}), cosine_annealing_lr({.t_max = 53, .min_factor = 0.01})},
      {7});
  Scheduler uninterrupted(schedule);
  std::vector<double> expected;
  for (int i = 0; i < 60; ++i, uninterrupted.step()) expected.push_back(uninterrupted.factor());
  EXPECT_EQ(uninterrupted.steps_taken(), 60);

  for (std::int64_t k : {0, 1, 6, 7, 8, 33, 59}) {
    SCOPED_TRACE(k);
    Scheduler first(schedule);
    for (std::int64_t i = 0; i < k; ++i) first.step();
    EXPECT_EQ(first.factor(), schedule->factor(k));
    const std::map<std::string, std::string> saved = first.state_dict();
    EXPECT_EQ(saved.at("step"), std::to_string(k));

    Scheduler resumed(step_lr({.step_size = 1, .gamma = 0.5}));  // a different schedule: the state replaces it
    resumed.load_state_dict(saved);
    EXPECT_EQ(resumed.steps_taken(), k);
    EXPECT_EQ(resumed.schedule().to_string(), schedule->to_string());
    for (std::int64_t i = k; i < 60; ++i, resumed.step()) {
      ASSERT_EQ(resumed.factor(), expected[static_cast<std::size_t>(i)]) << "step " << i;
    }
  }
  EXPECT_EQ(Scheduler(schedule, 33).lr(0.4), schedule->lr(33, 0.4));
}

TEST(LrSchedule, LoadStateErrorsLeaveTheSchedulerAsItWas) {
  Scheduler scheduler(exponential_lr({.gamma = 0.5}), 3);
  const auto expect_refused = [&](const std::map<std::string, std::string>& state, const std::string& message) {
    EXPECT_THAT([&] { scheduler.load_state_dict(state); }, ThrowsMessage<InvalidArgument>(HasSubstr(message)));
    EXPECT_EQ(scheduler.steps_taken(), 3);
    EXPECT_EQ(scheduler.schedule().to_string(), "exponential_lr(gamma=0.5)");
  };
  expect_refused({{"schedule", "step_lr(step_size=2,gamma=0.1)"}},
                 "Scheduler::load_state_dict: expected the keys schedule and step; missing: [step], unexpected: []");
  expect_refused({{"schedule", "step_lr(step_size=2,gamma=0.1)"}, {"step", "4"}, {"epoch", "1"}, {"lr", "1"}},
                 "missing: [], unexpected: [epoch, lr]");
  expect_refused({{"schedule", "step_lr(step_size=2,gamma=0.1)"}, {"step", "-4"}},
                 "step must be an integer >= 0, got \"-4\"");
  expect_refused({{"schedule", "step_lr(step_size=2,gamma=0.1)"}, {"step", "4x"}}, "got \"4x\"");
  expect_refused({{"schedule", "step_lr(step_size=0,gamma=0.1)"}, {"step", "4"}},
                 "step_lr: step_size must be at least 1, got 0");
}

TEST(LrSchedule, RefusesBadParameters) {
  const auto refused = [](auto make, const std::string& message) {
    EXPECT_THAT(make, ThrowsMessage<InvalidArgument>(HasSubstr(message)));
  };
  refused([] { step_lr({.step_size = 3})->factor(-1); },
          "step_lr(step_size=3,gamma=0.1): the step must be >= 0, got -1");
  refused([] { sequential_lr({exponential_lr({.gamma = 0.5}), exponential_lr({})}, {2})->factor(-5); },
          "the step must be >= 0, got -5");
  refused([] { multi_step_lr({.milestones = {2, 5, 5}}); },
          "multi_step_lr: milestones must be strictly increasing, got 5 after 5 in [2,5,5]");
  refused([] { multi_step_lr({.milestones = {4, 3}}); }, "got 3 after 4 in [4,3]");
  refused([] { multi_step_lr({.milestones = {-1, 3}}); },
          "multi_step_lr: milestones must be at least 0, got -1 at index 0 of [-1,3]");
  refused([] { piecewise_linear_lr({}); }, "piecewise_linear_lr: needs at least one knot (step, factor)");
  refused([] { piecewise_linear_lr({{0, 1.0}, {10, 0.5}, {10, 0.0}}); },
          "piecewise_linear_lr: knot steps must be strictly increasing, got 10 after 10 in [0,10,10]");
  refused([] { piecewise_linear_lr({{-3, 1.0}}); }, "knot steps must be at least 0, got -3");
  refused([] { piecewise_linear_lr({{0, 1.0}, {5, NAN}}); }, "piecewise_linear_lr: every knot's factor must be finite");
  refused([] { sequential_lr({exponential_lr({})}, {3}); },
          "sequential_lr: needs one milestone fewer than schedules, got 1 schedules and milestones [3]");
  refused([] { sequential_lr({exponential_lr({}), exponential_lr({}), exponential_lr({})}, {6, 6}); },
          "sequential_lr: milestones must be strictly increasing, got 6 after 6 in [6,6]");
  refused([] { sequential_lr({exponential_lr({}), exponential_lr({})}, {0}); },
          "sequential_lr: milestones must be at least 1, got 0");
  refused([] { sequential_lr({}, {}); }, "sequential_lr: needs at least one schedule");
  refused([] { chained_lr({exponential_lr({}), nullptr}); }, "chained_lr: schedule 1 of 2 is null");
  refused([] { step_lr({.step_size = 0}); }, "step_lr: step_size must be at least 1, got 0");
  refused([] { step_lr({.step_size = 1, .gamma = INFINITY}); }, "step_lr: gamma must be finite, got inf");
  refused([] { linear_lr({.start_factor = 1.5}); }, "linear_lr: start_factor must be in [0, 1], got 1.5");
  refused([] { linear_lr({.total_iters = 0}); }, "linear_lr: total_iters must be at least 1, got 0");
  refused([] { constant_lr({.factor = -0.5}); }, "constant_lr: factor must be in [0, 1], got -0.5");
  refused([] { cosine_annealing_lr({.t_max = 0}); }, "cosine_annealing_lr: t_max must be at least 1, got 0");
  refused([] { one_cycle_lr({.total_steps = 0}); }, "one_cycle_lr: total_steps must be at least 1, got 0");
  refused([] { one_cycle_lr({.total_steps = 2, .pct_start = 0.5}); },
          "one_cycle_lr: phase 1 of 2 would be empty (it ends at step 0 after starting at 0)");
  refused([] { one_cycle_lr({.total_steps = 100, .pct_start = 0.6, .three_phase = true}); },
          "one_cycle_lr: phase 3 of 3 would be empty");
  refused([] { one_cycle_lr({.total_steps = 100, .div_factor = 0.0}); },
          "one_cycle_lr: div_factor and final_div_factor must be positive, got 0 and 10000");
  refused([] { Scheduler(nullptr); }, "Scheduler: the schedule is null");
  refused([] { Scheduler(exponential_lr({}), -2); }, "Scheduler: steps taken must be >= 0, got -2");
}

TEST(LrSchedule, ParseErrorsNameThePosition) {
  const auto refused = [](const std::string& text, const std::string& message) {
    SCOPED_TRACE(text);
    EXPECT_THAT([&] { parse_schedule(text); }, ThrowsMessage<InvalidArgument>(HasSubstr(message)));
  };
  refused("warp_lr(gamma=0.5)", "parse_schedule: unknown schedule 'warp_lr' at character 0 of \"warp_lr(gamma=0.5)\"");
  refused("step_lr(step_size=2)", "step_lr: missing parameter 'gamma' at character 0");
  refused("step_lr(step_size=2,gamma=0.5,momentum=0.9)", "step_lr: unknown parameter 'momentum' at character 39");
  refused("step_lr(step_size=2,gamma=0.5,gamma=0.1)", "step_lr: parameter 'gamma' given twice at character 36");
  refused("step_lr(step_size=2.5,gamma=0.5)", "step_lr: expected an integer, got '2.5' at character 18");
  refused("step_lr(step_size=2,gamma=fast)", "step_lr: expected a finite number, got 'fast' at character 26");
  refused("step_lr(step_size=2,gamma=inf)", "expected a finite number, got 'inf'");
  refused("step_lr(step_size=2,gamma=0.5) x", "unexpected text after the schedule at character 31");
  refused("step_lr(step_size=2,gamma=0.5", "expected ')' at character 29");
  refused("0.5", "expected a schedule such as step_lr(...) at character 0");
  refused("", "expected a name or a number at character 0");
  refused("multi_step_lr(milestones=3,gamma=0.5)", "multi_step_lr: expected a [list] at character 25");
  refused("sequential_lr(schedules=[0.5],milestones=[])", "sequential_lr: expected a schedule at character 25");
  refused("one_cycle_lr(total_steps=10,pct_start=0.3,anneal=cubic,div_factor=25,final_div_factor=1e4,"
          "three_phase=false)",
          "one_cycle_lr: anneal must be cos or linear, got 'cubic'");
  refused("one_cycle_lr(total_steps=10,pct_start=0.3,anneal=cos,div_factor=25,final_div_factor=1e4,three_phase=1)",
          "one_cycle_lr: expected true or false, got '1'");
  refused("piecewise_linear_lr(steps=[0,5],factors=[1])", "piecewise_linear_lr: 2 steps but 1 factors");
  // The schedule's own checks run on parsed parameters too.
  refused("multi_step_lr(milestones=[5,2],gamma=0.5)", "multi_step_lr: milestones must be strictly increasing");
}

}  // namespace
}  // namespace strata::lr
