// The simulator build has no cuDNN: the engine switch reports it unavailable, and every
// cuDNN path throws NotSupported with this reason before it would call cuDNN.
#include "strata/core/engine.h"

namespace strata {

bool cudnn_available() { return false; }

std::string_view cudnn_unavailable_reason() {
  return "cuDNN is not available in the simulator build (STRATA_BACKEND=sim): use Engine::custom, or a CUDA build "
         "on a GPU";
}

}  // namespace strata
