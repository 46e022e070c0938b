// A stand-in for libcudnn in the run-time loader's tests (tests/core/cudnn_loader_test.cpp):
// it defines cudnnGetVersion alone, returning STRATA_FAKE_CUDNN_VERSION, so that the loader
// meets a library of another version, or of the right version without the other functions.
#include <cstddef>

extern "C" std::size_t cudnnGetVersion() { return STRATA_FAKE_CUDNN_VERSION; }
