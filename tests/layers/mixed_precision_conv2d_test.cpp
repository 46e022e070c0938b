// F:: ops in f16 and bf16 storage and under autocast (strata/core/autocast.h): conv2d.
// (Filled in by the mixed-precision work of issue 8.)
