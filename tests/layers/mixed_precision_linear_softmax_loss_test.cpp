// F:: ops in f16 and bf16 storage and under autocast (strata/core/autocast.h): linear_softmax_loss.
// (Filled in by the mixed-precision work of issue 8.)
