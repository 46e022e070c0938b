#include "checkpoint.h"

#include <cstdio>
#include <stdexcept>
#include <string_view>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "text_files.h"

namespace cifar10 {

namespace {

constexpr std::string_view kFormat = "strata.cifar10.checkpoint.v1";
constexpr std::string_view kPrefix = "checkpoint-";

std::string step_name(std::int64_t next_step) {
  char name[48];
  std::snprintf(name, sizeof name, "checkpoint-%08lld", static_cast<long long>(next_step));
  return name;
}

// The step of "checkpoint-<digits>.json", or -1 for any other name.
std::int64_t sidecar_step(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  if (file.extension() != ".json" || !name.starts_with(kPrefix)) return -1;
  const std::string digits = file.stem().string().substr(kPrefix.size());
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

}  // namespace

std::filesystem::path checkpoint_state_file(const std::filesystem::path& dir, std::int64_t next_step) {
  return dir / (step_name(next_step) + ".safetensors");
}

std::filesystem::path checkpoint_sidecar_file(const std::filesystem::path& dir, std::int64_t next_step) {
  return dir / (step_name(next_step) + ".json");
}

void write_checkpoint_sidecar(const std::filesystem::path& dir, const CheckpointInfo& info) {
  const nlohmann::ordered_json sidecar = {
      {"format", kFormat},
      {"net", info.net},
      {"epoch", info.epoch},
      {"step", info.next_step},
      {"seed", info.seed},
      {"batch_size", info.batch_size},
      {"train_images", info.train_images},
      {"batches_per_epoch", info.batches_per_epoch},
      {"total_steps", info.total_steps},
      {"training_seconds", info.training_seconds},
      {"deterministic", info.deterministic},
      {"state_file", checkpoint_state_file(dir, info.next_step).filename().string()},
      {"args", info.args},
  };
  write_text_file(checkpoint_sidecar_file(dir, info.next_step), sidecar.dump(2) + '\n');
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::int64_t step = sidecar_step(entry.path());
    if (step < 0 || step >= info.next_step) continue;
    std::error_code ignored;  // a stale pair left behind costs disk space, not correctness
    std::filesystem::remove(checkpoint_sidecar_file(dir, step), ignored);
    std::filesystem::remove(checkpoint_state_file(dir, step), ignored);
  }
}

std::optional<CheckpointInfo> find_latest_checkpoint(const std::filesystem::path& dir) {
  std::error_code missing;
  if (!std::filesystem::is_directory(dir, missing)) return std::nullopt;
  std::int64_t latest = -1;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::int64_t step = sidecar_step(entry.path());
    if (step > latest && std::filesystem::exists(checkpoint_state_file(dir, step))) latest = step;
  }
  if (latest < 0) return std::nullopt;
  const std::filesystem::path file = checkpoint_sidecar_file(dir, latest);
  try {
    const nlohmann::json sidecar = nlohmann::json::parse(read_text_file(file));
    if (sidecar.at("format") != kFormat) throw std::runtime_error("format is not " + std::string(kFormat));
    CheckpointInfo info;
    info.net = sidecar.at("net").get<std::string>();
    info.epoch = sidecar.at("epoch").get<int>();
    info.next_step = sidecar.at("step").get<std::int64_t>();
    info.seed = sidecar.at("seed").get<std::uint64_t>();
    info.batch_size = sidecar.at("batch_size").get<int>();
    info.train_images = sidecar.at("train_images").get<std::int64_t>();
    info.batches_per_epoch = sidecar.at("batches_per_epoch").get<std::int64_t>();
    info.total_steps = sidecar.at("total_steps").get<std::int64_t>();
    info.training_seconds = sidecar.at("training_seconds").get<double>();
    info.deterministic = sidecar.at("deterministic").get<bool>();
    info.args = sidecar.at("args").get<std::vector<std::string>>();
    if (info.next_step != latest) throw std::runtime_error("its step differs from its name");
    return info;
  } catch (const std::exception& error) {
    throw std::runtime_error("checkpoint sidecar " + file.string() + " is not valid: " + error.what() +
                             " (remove the folder's checkpoint-* files to start afresh)");
  }
}

std::vector<std::string> resume_mismatches(const CheckpointInfo& saved, const CheckpointInfo& now) {
  std::vector<std::string> mismatches;
  const auto compare = [&](const char* what, const auto& saved_value, const auto& now_value) {
    if (saved_value == now_value) return;
    using std::to_string;
    const auto text = [](const auto& value) {
      if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::string>) {
        return value;
      } else {
        return to_string(value);
      }
    };
    mismatches.push_back(std::string(what) + ": the checkpoint has " + text(saved_value) + ", this run " +
                         text(now_value));
  };
  compare("--net", saved.net, now.net);
  compare("--seed", saved.seed, now.seed);
  compare("batch size (--batch-size)", saved.batch_size, now.batch_size);
  compare("training images (--subset, --data)", saved.train_images, now.train_images);
  compare("batches per epoch", saved.batches_per_epoch, now.batches_per_epoch);
  compare("steps in the schedule (--epochs)", saved.total_steps, now.total_steps);
  return mismatches;
}

}  // namespace cifar10
