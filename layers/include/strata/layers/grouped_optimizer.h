// What SGD and AdamW share beyond Optimizer: each group's options of one type (their lr is
// unused: Optimizer keeps the learning rates), resolved and checked when a group is added,
// read back from a state dict and installed only when every group's options were accepted.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "strata/layers/optimizer.h"

namespace strata::optim {

template <typename Options>
class GroupedOptimizer : public Optimizer {
 public:
  // The group's options; lr is its current learning rate.
  Options options(int group) const {
    const double current_lr = lr(group);  // checks the group index
    Options chosen = group_options_[static_cast<std::size_t>(group)];
    chosen.lr = current_lr;
    return chosen;
  }

 protected:
  using Optimizer::Optimizer;

  // Adds a group whose options were resolved against the defaults; checks them first.
  void add_group(std::vector<Tensor> params, const Options& options) {
    check_options(options, options.lr, num_groups());
    add_param_group(std::move(params), options.lr);
    group_options_.push_back(options);
  }
  const Options& group_options(int group) const { return group_options_.at(static_cast<std::size_t>(group)); }

  // Throws InvalidArgument naming group when options (with learning rate lr) are refused.
  virtual void check_options(const Options& options, double lr, int group) const = 0;
  // The names of the per-parameter state tensors a group with these options keeps.
  virtual std::vector<std::string> state_names_for(const Options& options) const = 0;
  // Reads group g's option entries; nothing when one is missing (the reader has the problem).
  virtual std::optional<Options> read_group_options(detail::StateReader& reader, int group) const = 0;

  std::vector<std::string> state_names(int group) const override { return state_names_for(group_options(group)); }

  std::vector<std::optional<std::vector<std::string>>> read_options(detail::StateReader& reader) const override {
    std::vector<std::optional<std::vector<std::string>>> names;
    for (const std::optional<Options>& options : parse_options(reader)) {
      names.push_back(options ? std::optional(state_names_for(*options)) : std::nullopt);
    }
    return names;
  }

  void install_options(detail::StateReader& reader) override {
    std::vector<Options> installed;
    for (const std::optional<Options>& options : parse_options(reader)) installed.push_back(options.value());
    group_options_ = std::move(installed);
  }

 private:
  // Every group's options as read_options reads them: nothing where a problem was recorded.
  std::vector<std::optional<Options>> parse_options(detail::StateReader& reader) const;

  std::vector<Options> group_options_;
};

}  // namespace strata::optim
