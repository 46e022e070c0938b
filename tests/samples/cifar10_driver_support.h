// What the CIFAR-10 driver's tests share: a small training run on the synthetic set, and the
// command line parsed from arguments as main() parses argv.
#pragma once

#include <string>
#include <vector>

#include "samples/cifar10/train_loop.h"
#ifdef STRATA_HAVE_CIFAR10_CLI
#include "samples/cifar10/cli.h"
#endif

namespace cifar10::testing {

// The seed network on a small synthetic set, deterministic, a metrics row per step: three
// steps an epoch, the least that the one-cycle schedule of two epochs accepts with room, in
// batches small enough that the simulator under ASan takes seconds, not minutes.
inline TrainOptions small_run() {
  TrainOptions options;
  options.net = "seed";
  options.synthetic = true;
  options.train_subset = 48;
  options.test_subset = 24;
  options.batch_size = 16;
  options.epochs = 2;
  options.seed = 5;
  options.deterministic = true;
  options.tta = false;
  options.log_every = 1;
  return options;
}

#ifdef STRATA_HAVE_CIFAR10_CLI
// args without the program's name.
inline ParseOutcome parse(std::vector<std::string> args) {
  args.insert(args.begin(), "strata_cifar10");
  std::vector<const char*> argv;
  for (const std::string& arg : args) argv.push_back(arg.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}
#endif

}  // namespace cifar10::testing
