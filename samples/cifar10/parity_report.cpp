#include "parity_report.h"

#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include <strata/core/config.h>
#include <strata/core/determinism.h>
#include <strata/core/generator.h>
#include <strata/core/stream.h>
#include <strata/core/tensor.h>

#include "device_images.h"
#include "metrics.h"
#include "recipe.h"
#include "text_files.h"

namespace cifar10 {

namespace {

namespace nn = strata::nn;
using nlohmann::ordered_json;
using strata::Engine;
using strata::Tensor;

// Infinite (a failed or impossible comparison) as null: JSON has no infinity.
ordered_json finite_or_null(double value) { return std::isfinite(value) ? ordered_json(value) : ordered_json(nullptr); }

ordered_json layer_json(const nn::LayerParity& layer) {
  ordered_json tensors = ordered_json::array();
  for (const nn::TensorDifference& tensor : layer.tensors) {
    tensors.push_back({{"name", tensor.name},
                       {"max_abs", finite_or_null(tensor.max_abs)},
                       {"max_rel", finite_or_null(tensor.max_rel)},
                       {"reference_max_abs", tensor.reference_max_abs},
                       {"problem", tensor.problem}});
  }
  return {{"path", layer.path},
          {"type", layer.type},
          {"summary", layer.summary},
          {"error", layer.error},
          {"worst_rel", finite_or_null(layer.worst_rel())},
          {"tensors", std::move(tensors)}};
}

bool needs_cudnn(Engine engine) { return engine == Engine::cudnn || engine == Engine::automatic; }

}  // namespace

ParityEngines parse_parity_engines(const std::string& text) {
  const auto comma = text.find(',');
  const auto engine = [&](const std::string& name) {
    const std::optional<Engine> parsed = strata::engine_from_name(name);
    if (!parsed) {
      throw std::invalid_argument("'" + text + "': '" + name +
                                  "' is not an engine; give two of custom, cudnn and auto, e.g. custom,cudnn");
    }
    return *parsed;
  };
  if (comma == std::string::npos || text.find(',', comma + 1) != std::string::npos) {
    throw std::invalid_argument("'" + text + "': give the reference and the candidate separated by a comma, "
                                "e.g. custom,cudnn");
  }
  const ParityEngines engines{.reference = engine(text.substr(0, comma)), .candidate = engine(text.substr(comma + 1))};
  if (engines.reference == engines.candidate) {
    throw std::invalid_argument("'" + text + "': the two engines are the same; nothing to compare");
  }
  return engines;
}

ParityRun run_parity_report(const TrainOptions& options, const DataSets& data, const ParityEngines& engines,
                            std::FILE* out) {
  if (options.deterministic) strata::set_deterministic(true);
  const cudaStream_t stream = strata::current_stream();
  strata::manual_seed(options.seed);
  std::unique_ptr<Recipe> recipe = make_recipe(options.net, {.batch_size = options.batch_size,
                                                             .epochs = options.epochs,
                                                             .lr_scale = options.lr_scale,
                                                             .seed = options.seed,
                                                             .engine = options.engine,
                                                             .conv_math = options.conv_math});
  auto* model = dynamic_cast<nn::UnaryModule*>(&recipe->model());
  if (model == nullptr) {
    throw std::logic_error("recipe " + std::string(recipe->name()) + ": its model is not a UnaryModule");
  }
  const DeviceImages train_images(data.train, Placement::automatic, stream);
  EpochLoader loader(train_images, recipe->batch_size(), recipe->drop_last(), recipe->augment_options(), options.seed,
                     recipe->batch_storage());
  if (loader.batches_per_epoch() == 0) {
    throw std::runtime_error(std::to_string(data.train.count()) + " training images do not make one batch of " +
                             std::to_string(recipe->batch_size()) + ": raise --subset or lower --batch-size");
  }
  recipe->initialise(train_images, stream);  // airbench94's whitening comes from these images
  loader.start_epoch(0);
  const Batch batch = loader.batch(0, stream);

  ParityRun run;
  run.net = std::string(recipe->name());
  const Engine engine_after = options.engine.value_or(strata::default_engine());
  run.engine_after = std::string(strata::engine_name(engine_after));
  run.data = data.source;
  run.simulator = STRATA_BACKEND_SIM != 0;
  run.seed = options.seed;
  run.batch_size = recipe->batch_size();
  run.train_images = data.train.count();

  std::fprintf(out, "engine parity report of %s on its first training batch (%d augmented images of %s) with the "
                    "recipe's training loss\n",
               run.net.c_str(), run.batch_size, run.data.c_str());
  if ((needs_cudnn(engines.reference) || needs_cudnn(engines.candidate)) && !strata::cudnn_available()) {
    std::fprintf(out, "note: cuDNN is not available here (%s): on cudnn the layers with a cuDNN path report its "
                      "refusal, on auto they fall back to Strata's kernels (then their differences are zero)\n",
                 std::string(strata::cudnn_unavailable_reason()).c_str());
  }
  std::fflush(out);
  run.report = nn::engine_parity(
      *model, batch.images, [&](const Tensor& logits) { return recipe->training_loss(logits, batch.labels); },
      {.reference = engines.reference, .candidate = engines.candidate, .engine_after = engine_after});
  std::fputs(run.report.table().c_str(), out);
  std::fflush(out);
  return run;
}

std::string parity_json(const ParityRun& run) {
  const nn::EngineParityReport& report = run.report;
  ordered_json shape = ordered_json::array();
  for (int d = 0; d < report.input_shape.rank(); ++d) shape.push_back(report.input_shape[d]);
  ordered_json layers = ordered_json::array();
  for (const nn::LayerParity& layer : report.layers) layers.push_back(layer_json(layer));
  const ordered_json json = {{"parity_report",
                              {{"net", run.net},
                               {"engine", run.engine_after},
                               {"data", run.data},
                               {"simulator", run.simulator},
                               {"seed", run.seed},
                               {"batch_size", run.batch_size},
                               {"train_images", run.train_images},
                               {"reference", std::string(strata::engine_name(report.reference))},
                               {"candidate", std::string(strata::engine_name(report.candidate))},
                               {"input_shape", std::move(shape)},
                               {"worst_rel", finite_or_null(report.worst_rel())},
                               {"layers", std::move(layers)}}}};
  return json.dump(2) + "\n";
}

std::filesystem::path write_parity_metrics(const ParityRun& run, const std::filesystem::path& file) {
  const std::filesystem::path json = metrics_paths(file).json;
  write_text_file(json, parity_json(run));
  return json;
}

}  // namespace cifar10
