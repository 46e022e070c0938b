// The checkpoint folder of --checkpoint DIR: the recipe's state file
// (checkpoint-<step>.safetensors, Recipe::save_state) and a small JSON sidecar beside it
// (checkpoint-<step>.json: the net, the step, the epoch, the seed, the arguments). The sidecar
// is written after the state, both atomically, so a sidecar proves its state file complete;
// only the latest pair is kept.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace cifar10 {

struct CheckpointInfo {
  std::string net;
  std::uint64_t seed = 0;
  int batch_size = 0;
  std::int64_t train_images = 0;
  std::int64_t batches_per_epoch = 0;
  std::int64_t total_steps = 0;
  std::int64_t next_step = 0;  // the step a resume runs first
  int epoch = 0;               // the epoch of next_step
  double training_seconds = 0;
  bool deterministic = false;
  std::vector<std::string> args;  // the command line that wrote it
};

std::filesystem::path checkpoint_state_file(const std::filesystem::path& dir, std::int64_t next_step);
std::filesystem::path checkpoint_sidecar_file(const std::filesystem::path& dir, std::int64_t next_step);

// Writes the sidecar of info.next_step (after the state file), then removes older pairs.
void write_checkpoint_sidecar(const std::filesystem::path& dir, const CheckpointInfo& info);

// The sidecar of the latest complete checkpoint in dir, or nothing when there is none (or no
// dir). Throws std::runtime_error naming the file when the latest sidecar does not parse.
std::optional<CheckpointInfo> find_latest_checkpoint(const std::filesystem::path& dir);

// What differs between a saved checkpoint and the run about to resume it, as sentences such
// as "--seed: the checkpoint has 1, this run 2"; empty when the resume can continue exactly.
std::vector<std::string> resume_mismatches(const CheckpointInfo& saved, const CheckpointInfo& now);

}  // namespace cifar10
