#include "train_loop.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include <strata/core/allocator.h>
#include <strata/core/config.h>
#include <strata/core/determinism.h>
#include <strata/core/device.h>
#include <strata/core/generator.h>
#include <strata/core/stream.h>
#include <strata/core/tensor.h>

#include "checkpoint.h"
#include "device_images.h"
#include "progress.h"
#include "recipe.h"
#include "step_readback.h"
#include "synthetic_images.h"

namespace cifar10 {

namespace {

using Clock = std::chrono::steady_clock;

std::string format(const char* pattern, auto... values) {
  char text[512];
  std::snprintf(text, sizeof text, pattern, values...);
  return text;
}

// Training time: runs while the device trains; paused (after waiting for the device) for
// evaluations and checkpoints, which are not part of a time-to-accuracy.
class TrainingClock {
 public:
  explicit TrainingClock(double seconds_before) : accumulated_(seconds_before) {}
  void start() {
    started_ = Clock::now();
    running_ = true;
  }
  void pause(cudaStream_t stream) {
    if (!running_) return;
    strata::stream_synchronize(stream);
    accumulated_ += std::chrono::duration<double>(Clock::now() - started_).count();
    running_ = false;
  }
  double seconds() const {
    return accumulated_ + (running_ ? std::chrono::duration<double>(Clock::now() - started_).count() : 0.0);
  }

 private:
  double accumulated_;
  Clock::time_point started_{};
  bool running_ = false;
};

// Top-1 accuracy of the recipe on images (whose labels host holds), in chunks so that
// test-time augmentation's extra views fit in memory beside training's.
double evaluate(Recipe& recipe, const DeviceImages& images, const HostImages& host, bool tta, cudaStream_t stream) {
  const NvtxScope range(tta ? "cifar10.evaluate_tta" : "cifar10.evaluate");
  constexpr std::int64_t kChunk = 1000;
  const Normalisation normalisation = recipe.augment_options().normalisation;
  std::int64_t correct = 0;
  for (std::int64_t begin = 0; begin < images.count(); begin += kChunk) {
    const std::int64_t count = std::min(kChunk, images.count() - begin);
    const strata::Tensor logits =
        recipe.evaluate_logits(images.normalised(begin, count, normalisation, stream), tta, stream);  // (count, 10)
    if (logits.shape() != strata::Shape{count, kClasses}) {
      throw std::runtime_error("recipe " + std::string(recipe.name()) + ": evaluate_logits gave " +
                               logits.shape().to_string() + " for " + std::to_string(count) + " images, expected (" +
                               std::to_string(count) + ", 10)");
    }
    const std::vector<float> values = logits.to_vector<float>(stream);
    for (std::int64_t i = 0; i < count; ++i) {
      const auto row = values.begin() + i * kClasses;
      const auto predicted = std::max_element(row, row + kClasses) - row;
      correct += predicted == host.labels[static_cast<std::size_t>(begin + i)];
    }
  }
  return images.count() > 0 ? static_cast<double>(correct) / static_cast<double>(images.count()) : 0.0;
}

HostImages subset(HostImages set, std::int64_t count, const char* flag) {
  if (count == 0 || count == set.count()) return set;
  if (count < 0 || count > set.count()) {
    throw std::runtime_error(std::string(flag) + " " + std::to_string(count) + ": the set has " +
                             std::to_string(set.count()) + " images; give a number from 1 to " +
                             std::to_string(set.count()));
  }
  return balanced_subset(set, count);
}

}  // namespace

DataSets load_data_sets(const TrainOptions& options) {
  DataSets data;
  if (options.synthetic) {
    data.train = make_synthetic_images(kSyntheticTrainImages, 1);
    data.test = make_synthetic_images(kSyntheticTestImages, 2);
    data.source = "synthetic";
  } else {
    const std::filesystem::path dir = locate_batches_dir(options.data_flag);
    data.train = read_training_set(dir);
    data.test = read_test_set(dir);
    data.source = dir.string();
  }
  data.train = subset(std::move(data.train), options.train_subset, "--subset");
  data.test = subset(std::move(data.test), options.test_subset, "--test-subset");
  return data;
}

RunMetrics run_training(const TrainOptions& options, const DataSets& data, std::FILE* out) {
  if (options.deterministic) strata::set_deterministic(true);
  const cudaStream_t stream = strata::current_stream();
  strata::manual_seed(options.seed);  // the initial weights
  std::unique_ptr<Recipe> recipe = make_recipe(options.net, {.batch_size = options.batch_size,
                                                             .epochs = options.epochs,
                                                             .lr_scale = options.lr_scale,
                                                             .seed = options.seed,
                                                             .engine = options.engine,
                                                             .graph = options.graph,
                                                             .graph_streams = options.graph_streams,
                                                             .conv_math = options.conv_math,
                                                             .precision = options.precision,
                                                             .memory_format = options.memory_format});
  const DeviceImages train_images(data.train, Placement::automatic, stream);
  const DeviceImages test_images(data.test, Placement::automatic, stream);
  EpochLoader loader(train_images, recipe->batch_size(), recipe->drop_last(), recipe->augment_options(), options.seed,
                     recipe->batch_storage());
  const std::int64_t batches_per_epoch = loader.batches_per_epoch();
  if (batches_per_epoch == 0) {
    throw std::runtime_error(format("%lld training images do not make one batch of %d: raise --subset or lower "
                                    "--batch-size",
                                    static_cast<long long>(data.train.count()), recipe->batch_size()));
  }
  const std::int64_t total_steps = recipe->total_steps(batches_per_epoch);
  const int epochs = static_cast<int>((total_steps + batches_per_epoch - 1) / batches_per_epoch);

  RunMetrics metrics;
  RunSummary& summary = metrics.summary;
  summary.net = std::string(recipe->name());
  summary.engine = std::string(strata::engine_name(options.engine.value_or(strata::default_engine())));
  summary.graph = std::string(graph_mode_name(options.graph));
  summary.precision = std::string(strata::dtype_name(options.precision.value_or(strata::DType::f32)));
  summary.conv_math = std::string(strata::kernels::to_string(options.conv_math));
  summary.conv_tile = std::string(strata::kernels::to_string(options.conv_tile));
  summary.data = data.source;
  summary.simulator = STRATA_BACKEND_SIM != 0;
  summary.deterministic = strata::is_deterministic();
  summary.seed = options.seed;
  summary.batch_size = recipe->batch_size();
  summary.train_images = data.train.count();
  summary.test_images = data.test.count();
  summary.total_steps = total_steps;
  summary.target_accuracy = options.target_accuracy;

  CheckpointInfo identity{.net = summary.net,
                          .seed = options.seed,
                          .batch_size = summary.batch_size,
                          .train_images = summary.train_images,
                          .batches_per_epoch = batches_per_epoch,
                          .total_steps = total_steps,
                          .deterministic = summary.deterministic,
                          .args = options.args};
  ProgressLine progress(out, options.interactive);
  std::optional<CheckpointInfo> resume_from;
  if (options.resume) {
    resume_from = find_latest_checkpoint(options.checkpoint_dir);
    if (!resume_from) {
      progress.message("--resume: no checkpoint in " + options.checkpoint_dir.string() + " yet; starting at step 0");
    } else if (const auto mismatches = resume_mismatches(*resume_from, identity); !mismatches.empty()) {
      std::string text = "cannot resume from " + checkpoint_sidecar_file(options.checkpoint_dir,
                                                                          resume_from->next_step).string() + ":";
      for (const std::string& mismatch : mismatches) text += "\n  " + mismatch;
      throw std::runtime_error(text + "\nrun with the flags it was written with (its \"args\"), or without --resume "
                                      "to start afresh");
    }
  }
  progress.message(format("%s on %lld training and %lld test images (%s): batch %d, %lld steps per epoch, %lld steps "
                          "in %d epoch%s, graph %s, precision %s, conv math %s, conv tile %s",
                          summary.net.c_str(), static_cast<long long>(summary.train_images),
                          static_cast<long long>(summary.test_images), summary.data.c_str(), summary.batch_size,
                          static_cast<long long>(batches_per_epoch), static_cast<long long>(total_steps), epochs,
                          epochs == 1 ? "" : "s", summary.graph.c_str(), summary.precision.c_str(),
                          summary.conv_math.c_str(), summary.conv_tile.c_str()));

  strata::stream_synchronize(stream);  // the images are on the device before the clock starts
  TrainingClock clock(resume_from ? resume_from->training_seconds : 0.0);
  std::int64_t step = 0;
  if (resume_from) {
    // No initialise: the state file restores all it sets (and it was timed with the run that
    // wrote the checkpoint).
    step = recipe->load_state(checkpoint_state_file(options.checkpoint_dir, resume_from->next_step), stream);
    if (step != resume_from->next_step) {
      throw std::runtime_error(format("checkpoint %s holds step %lld, its sidecar says %lld",
                                      checkpoint_state_file(options.checkpoint_dir, resume_from->next_step).c_str(),
                                      static_cast<long long>(step), static_cast<long long>(resume_from->next_step)));
    }
    summary.resumed_from_step = step;
    if (resume_from->deterministic != summary.deterministic) {
      progress.message(std::string("note: the checkpoint was written ") +
                       (resume_from->deterministic ? "with" : "without") + " --deterministic, this run is " +
                       (summary.deterministic ? "with" : "without") + " it: the result may differ in the last bits");
    }
    progress.message(format("resumed from step %lld (epoch %lld) of %s", static_cast<long long>(step),
                            static_cast<long long>(step / batches_per_epoch + 1),
                            options.checkpoint_dir.c_str()));
    clock.start();
  } else {
    clock.start();
    const NvtxScope range("cifar10.initialise");
    recipe->initialise(train_images, stream);
  }

  const auto save_checkpoint = [&](std::int64_t next_step) {
    const NvtxScope range("cifar10.checkpoint");
    clock.pause(stream);
    std::filesystem::create_directories(options.checkpoint_dir);
    recipe->save_state(checkpoint_state_file(options.checkpoint_dir, next_step), next_step, stream);
    CheckpointInfo info = identity;
    info.next_step = next_step;
    info.epoch = static_cast<int>(next_step / batches_per_epoch);
    info.training_seconds = clock.seconds();
    write_checkpoint_sidecar(options.checkpoint_dir, info);
    clock.start();
  };

  StepReadback readback(std::max(options.log_every, 1));
  ProfilerWindow profiler(options.profile_steps);
  strata::stream_synchronize(stream);  // initialisation stays out of the first interval's speed
  double interval_start_seconds = clock.seconds();
  std::int64_t last_saved_step = step;
  int epochs_this_run = 0;
  for (; step < total_steps; ++step) {
    const int epoch = static_cast<int>(step / batches_per_epoch);
    const std::int64_t index = step % batches_per_epoch;
    if (index == 0 || step == summary.resumed_from_step) loader.start_epoch(epoch);
    profiler.before_step(step, stream);
    {
      const NvtxScope range("cifar10.train_step");
      const Batch batch = loader.batch(index, stream);
      readback.record(recipe->train_step(batch, step, stream), stream);
    }
    profiler.after_step(step, stream);

    const bool epoch_end = index == batches_per_epoch - 1 || step == total_steps - 1;
    // Checked on the host clock after queueing (the device may still be behind), then again
    // after a readback has waited for the device.
    const auto time_is_up = [&] {
      return options.time_limit_seconds > 0 && clock.seconds() >= options.time_limit_seconds;
    };
    bool out_of_time = time_is_up();
    if (readback.full() || epoch_end || out_of_time) {
      const IntervalTotals totals = readback.collect(stream);
      const double now = clock.seconds();
      const double images = static_cast<double>(totals.steps) * summary.batch_size;
      const StepRecord row{.step = step + 1,
                           .epoch = epoch,
                           .loss = totals.loss_sum / static_cast<double>(totals.steps),
                           .train_accuracy = totals.correct_sum / images,
                           .images_per_second = now > interval_start_seconds ? images / (now - interval_start_seconds)
                                                                             : 0.0,
                           .elapsed_seconds = now};
      metrics.steps.push_back(row);
      interval_start_seconds = now;
      progress.update({.epoch = epoch,
                       .epochs = epochs,
                       .step = row.step,
                       .total_steps = total_steps,
                       .images_per_second = row.images_per_second,
                       .loss = row.loss,
                       .train_accuracy = row.train_accuracy,
                       .elapsed_seconds = row.elapsed_seconds});
      out_of_time = time_is_up();
    }
    if (epoch_end) {
      ++epochs_this_run;
      recipe->end_epoch(epoch);
      EpochRecord record{.epoch = epoch, .step = step + 1, .elapsed_seconds = clock.seconds(), .test_accuracy = {}};
      if (options.target_accuracy) {
        clock.pause(stream);
        record.elapsed_seconds = clock.seconds();
        record.test_accuracy = evaluate(*recipe, test_images, data.test, options.tta, stream);
        if (!summary.time_to_target_seconds && *record.test_accuracy >= *options.target_accuracy) {
          summary.time_to_target_seconds = record.elapsed_seconds;
        }
        progress.message(format("epoch %d: test accuracy %.2f%%%s (target %.2f%%)", epoch + 1,
                                100 * *record.test_accuracy, options.tta ? " with TTA" : "",
                                100 * *options.target_accuracy));
        clock.start();
      }
      metrics.epochs.push_back(record);
      progress.keep();
      if (!options.checkpoint_dir.empty()) {
        save_checkpoint(step + 1);
        last_saved_step = step + 1;
      }
    }
    const bool epochs_done = epoch_end && options.stop_after_epochs > 0 &&
                             epochs_this_run >= options.stop_after_epochs && step + 1 < total_steps;
    if (epochs_done) {
      progress.message(format("--stop-after-epochs %d: stopping after step %lld of %lld", options.stop_after_epochs,
                              static_cast<long long>(step + 1), static_cast<long long>(total_steps)));
      ++step;
      break;
    }
    if (out_of_time) {
      summary.stopped_by_time_limit = step + 1 < total_steps;
      if (summary.stopped_by_time_limit) {
        progress.message(format("--time-limit %g s reached after step %lld of %lld: stopping training, evaluating "
                                "what it learnt",
                                options.time_limit_seconds, static_cast<long long>(step + 1),
                                static_cast<long long>(total_steps)));
      }
      if (!options.checkpoint_dir.empty() && last_saved_step != step + 1) save_checkpoint(step + 1);
      ++step;
      break;
    }
  }
  {
    const NvtxScope range("cifar10.finish");
    recipe->finish(stream);
  }
  clock.pause(stream);
  progress.keep();
  summary.steps = step;
  summary.training_seconds = clock.seconds();

  summary.test_accuracy = evaluate(*recipe, test_images, data.test, false, stream);
  if (options.tta) summary.test_accuracy_tta = evaluate(*recipe, test_images, data.test, true, stream);
  const double reported = summary.test_accuracy_tta.value_or(summary.test_accuracy);
  if (options.target_accuracy && !summary.time_to_target_seconds && reported >= *options.target_accuracy) {
    summary.time_to_target_seconds = summary.training_seconds;
  }
  summary.peak_device_memory_bytes = strata::device_memory_stats(strata::current_device()).peak_in_use_bytes;
  std::fputs(format_summary(summary).c_str(), out);
  std::fflush(out);
  return metrics;
}

std::string format_summary(const RunSummary& summary) {
  std::string text = format("test accuracy %.2f%%", 100 * summary.test_accuracy);
  if (summary.test_accuracy_tta) text += format(", %.2f%% with TTA", 100 * *summary.test_accuracy_tta);
  text += format(" (%lld test images)\n", static_cast<long long>(summary.test_images));
  text += format("training time %.2f s for %lld of %lld steps%s\n", summary.training_seconds,
                 static_cast<long long>(summary.steps), static_cast<long long>(summary.total_steps),
                 summary.stopped_by_time_limit ? " (stopped by --time-limit)" : "");
  if (summary.target_accuracy) {
    text += summary.time_to_target_seconds
                ? format("time to %.2f%%: %.2f s\n", 100 * *summary.target_accuracy, *summary.time_to_target_seconds)
                : format("target %.2f%% not reached\n", 100 * *summary.target_accuracy);
  }
  text += format("peak device memory %.1f MiB\n", static_cast<double>(summary.peak_device_memory_bytes) / (1 << 20));
  return text;
}

}  // namespace cifar10
