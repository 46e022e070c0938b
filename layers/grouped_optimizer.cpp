// GroupedOptimizer's parsing of group options from a state dict, for the optimizers that
// use it (instantiated here, where the state reader is known).
#include "strata/layers/grouped_optimizer.h"

#include <fmt/format.h>

#include "layers/optimizer_state_io.h"
#include "strata/core/errors.h"
#include "strata/layers/adamw.h"
#include "strata/layers/sgd.h"

namespace strata::optim {

template <typename Options>
std::vector<std::optional<Options>> GroupedOptimizer<Options>::parse_options(detail::StateReader& reader) const {
  std::vector<std::optional<Options>> parsed;
  for (int g = 0; g < num_groups(); ++g) {
    std::optional<Options> options = read_group_options(reader, g);
    if (options) {
      try {
        check_options(*options, 0.0, g);
      } catch (const InvalidArgument& error) {
        reader.problem(fmt::format("the options of group {} are refused: {}", g, error.what()));
        options.reset();
      }
    }
    parsed.push_back(std::move(options));
  }
  return parsed;
}

template class GroupedOptimizer<SgdOptions>;
template class GroupedOptimizer<AdamWOptions>;

}  // namespace strata::optim
