# Build options of Strata. Every option is prefixed STRATA_.

set(STRATA_BACKEND "cuda" CACHE STRING
  "cuda: compile kernels with nvcc for NVIDIA GPUs; sim: compile the same kernels with the host compiler and run them on the SIMT simulator")
set_property(CACHE STRATA_BACKEND PROPERTY STRINGS cuda sim)
if(NOT STRATA_BACKEND MATCHES "^(cuda|sim)$")
  message(FATAL_ERROR "STRATA_BACKEND must be 'cuda' or 'sim', got '${STRATA_BACKEND}'")
endif()

option(STRATA_BUILD_TESTS "Build the GoogleTest suites" ON)
option(STRATA_BUILD_SAMPLES "Build the samples" ON)
option(STRATA_SANITIZE "Build with AddressSanitizer and UBSan (sim backend: kernels are checked too)" OFF)
option(STRATA_WARNINGS_AS_ERRORS "Treat compiler warnings in Strata's own code as errors" OFF)

include(GNUInstallDirs)

if(CMAKE_CXX_STANDARD LESS 20)
  message(FATAL_ERROR "Strata needs C++20 (CMAKE_CXX_STANDARD is ${CMAKE_CXX_STANDARD})")
endif()
set(CMAKE_CXX_STANDARD 20)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_CXX_EXTENSIONS OFF)
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE RelWithDebInfo CACHE STRING "Build type" FORCE)
endif()

if(STRATA_BACKEND STREQUAL "cuda")
  set(STRATA_BACKEND_SIM 0)
  # H100/H200 by default, with Hopper's arch-specific instructions (sm_90a: wgmma); users
  # targeting other GPUs set CMAKE_CUDA_ARCHITECTURES (without 90a the wgmma paths are off).
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90a)
  endif()
  if("90a" IN_LIST CMAKE_CUDA_ARCHITECTURES)
    set(STRATA_WGMMA_BUILT 1)
  else()
    set(STRATA_WGMMA_BUILT 0)
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_EXTENSIONS OFF)
else()
  set(STRATA_BACKEND_SIM 1)
  set(STRATA_WGMMA_BUILT 0)
endif()

if(STRATA_SANITIZE)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "STRATA_SANITIZE needs GCC or Clang")
  endif()
  if(STRATA_BACKEND STREQUAL "cuda")
    message(WARNING "STRATA_SANITIZE checks host code only in the cuda backend; use compute-sanitizer for kernels")
  endif()
  set(STRATA_SANITIZER_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${STRATA_SANITIZER_FLAGS}>")
  add_link_options(${STRATA_SANITIZER_FLAGS})
  # Line tables are all that a sanitizer's report needs; full debug information (-g) makes
  # every file of this build a third slower to compile. Comes after the build type's -g.
  add_compile_options("$<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CONFIG:RelWithDebInfo>>:-g1>")
endif()

# Marks .cu files of a target: nvcc compiles them in the cuda backend; in the sim backend
# the host compiler compiles the very same files as C++ (CMake then passes -x c++).
function(strata_cuda_sources)
  if(STRATA_BACKEND_SIM)
    # Source properties are per directory: set them where the file is listed and where the
    # library target is defined.
    set_source_files_properties(${ARGN} DIRECTORY "${CMAKE_CURRENT_SOURCE_DIR}" "${PROJECT_SOURCE_DIR}"
                                PROPERTIES LANGUAGE CXX)
  endif()
endfunction()
