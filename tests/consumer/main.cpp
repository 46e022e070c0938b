// An application of an installed Strata: checks that the package's headers and library
// work from outside the source tree. Prints the version and flavour; where a device is
// present (always in the simulator flavour) it fills a tensor on a stream and checks the
// copy that comes back; without a GPU it only reports that it linked.
#include <cstdio>
#include <cstring>
#include <exception>
#include <vector>

#include <strata/strata.h>

namespace {

constexpr const char* kHeaderBackend = STRATA_BACKEND_SIM ? "sim" : "cuda";

int run() {
  std::printf("strata_consumer: Strata %s, %s flavour\n", STRATA_VERSION_STRING, kHeaderBackend);
#ifdef STRATA_CONSUMER_EXPECTED_BACKEND
  // The package (StrataConfig.cmake or strata.pc) and the installed headers must agree.
  if (std::strcmp(STRATA_CONSUMER_EXPECTED_BACKEND, kHeaderBackend) != 0) {
    std::fprintf(stderr, "strata_consumer: the package says flavour '%s', the headers say '%s'\n",
                 STRATA_CONSUMER_EXPECTED_BACKEND, kHeaderBackend);
    return 1;
  }
#endif

  if (strata::device_count() == 0) {
    std::printf("strata_consumer: linked fine; no GPU present, so nothing was run on a device\n");
    return 0;
  }
  std::printf("strata_consumer: %s\n", strata::describe(strata::device_properties()).c_str());

  strata::Stream stream;
  strata::Tensor x = strata::Tensor::empty({4, 8}, strata::DType::f32, stream);  // (rows, columns)
  x.fill(3.0, stream);
  const std::vector<float> values = x.to_vector<float>(stream);
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] != 3.0f) {
      std::fprintf(stderr, "strata_consumer: element %zu is %g after fill(3)\n", i, values[i]);
      return 1;
    }
  }
  std::printf("strata_consumer: filled %s with 3 and read back %zu correct values\n", x.to_string().c_str(),
              values.size());
  return 0;
}

}  // namespace

int main() {
  try {
    return run();
  } catch (const std::exception& error) {
    std::fprintf(stderr, "strata_consumer: %s\n", error.what());
    return 1;
  }
}
