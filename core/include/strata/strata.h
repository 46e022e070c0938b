// Strata's umbrella header: the whole public API. Applications write
// #include <strata/strata.h>; Strata's own code includes the individual headers it uses.
#pragma once

#include "strata/core/allocator.h"
#include "strata/core/config.h"
#include "strata/core/device.h"
#include "strata/core/dtype.h"
#include "strata/core/errors.h"
#include "strata/core/gemm.h"
#include "strata/core/philox.h"
#include "strata/core/pinned.h"
#include "strata/core/random.h"
#include "strata/core/shape.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
