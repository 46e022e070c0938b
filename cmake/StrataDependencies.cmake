# Third-party dependencies. System packages first (Debian: libfmt-dev, nlohmann-json3-dev,
# libgtest-dev, libboost-context-dev); sources carried in STRATA_DEPS_DIR (default: .deps/ in
# the source tree, see docs/gpu-check.md) for offline machines; FetchContent as the last resort.

include(FetchContent)
set(STRATA_DEPS_DIR "${PROJECT_SOURCE_DIR}/.deps" CACHE PATH
  "Folder with carried dependency sources (fmt/include, nlohmann_json/include, googletest/) for offline builds")

find_package(Threads REQUIRED)
find_package(CUDAToolkit 12.0 REQUIRED)
# CMake 3.25 knows no C++20 flag for nvcc ("CUDA20 dialect not supported"); nvcc 12+
# accepts -std=c++20. Newer CMake defines these itself.
if(CMAKE_CUDA_COMPILER_LOADED AND NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()

# Everything the library links privately: fmt and the backend's own libraries.
add_library(strata_private_deps INTERFACE)
target_link_libraries(strata_private_deps INTERFACE Threads::Threads)
# fmt turns its constexpr support off when it sees nvcc, and its consteval format-string
# checks then fail to compile in C++20 .cu files ("call to consteval function did not
# produce a valid constant expression"). nvcc 12+ handles the constexpr code: turn it on.
target_compile_definitions(strata_private_deps INTERFACE "$<$<COMPILE_LANGUAGE:CUDA>:FMT_USE_CONSTEXPR=1>")

# fmt: used only inside the library (never in public headers), so consumers do not need it.
find_package(fmt 9 QUIET)
if(fmt_FOUND)
  target_link_libraries(strata_private_deps INTERFACE fmt::fmt)
elseif(EXISTS "${STRATA_DEPS_DIR}/fmt/include/fmt/format.h")
  message(STATUS "fmt: header-only from ${STRATA_DEPS_DIR}/fmt/include")
  target_include_directories(strata_private_deps SYSTEM INTERFACE "${STRATA_DEPS_DIR}/fmt/include")
  target_compile_definitions(strata_private_deps INTERFACE FMT_HEADER_ONLY=1)
else()
  message(STATUS "fmt: not installed, fetching 10.2.1")
  FetchContent_Declare(fmt
    GIT_REPOSITORY https://github.com/fmtlib/fmt.git
    GIT_TAG 10.2.1
    GIT_SHALLOW TRUE)
  FetchContent_MakeAvailable(fmt)
  target_link_libraries(strata_private_deps INTERFACE fmt::fmt-header-only)
endif()

# nlohmann/json: parses and writes the JSON headers of checkpoint files; header-only and,
# like fmt, used only inside the library.
find_package(nlohmann_json 3 QUIET)
if(nlohmann_json_FOUND)
  target_link_libraries(strata_private_deps INTERFACE nlohmann_json::nlohmann_json)
elseif(EXISTS "${STRATA_DEPS_DIR}/nlohmann_json/include/nlohmann/json.hpp")
  message(STATUS "nlohmann_json: header-only from ${STRATA_DEPS_DIR}/nlohmann_json/include")
  target_include_directories(strata_private_deps SYSTEM INTERFACE "${STRATA_DEPS_DIR}/nlohmann_json/include")
else()
  message(STATUS "nlohmann_json: not installed, fetching 3.11.3")
  FetchContent_Declare(nlohmann_json
    GIT_REPOSITORY https://github.com/nlohmann/json.git
    GIT_TAG v3.11.3
    GIT_SHALLOW TRUE
    SYSTEM)
  set(JSON_Install OFF CACHE BOOL "" FORCE)
  FetchContent_MakeAvailable(nlohmann_json)
  target_link_libraries(strata_private_deps INTERFACE nlohmann_json::nlohmann_json)
endif()

if(STRATA_BACKEND_SIM)
  # Fibers for the simulated GPU threads.
  find_package(Boost 1.74 REQUIRED COMPONENTS context)
  target_link_libraries(strata_private_deps INTERFACE Boost::context)
else()
  # cuDNN: headers only; libstrata.so loads the library at run time (core/cudnn_loader.h) with
  # dlopen, so that it runs without one, and does not list it among the libraries it needs.
  find_package(CUDNN 9.0 REQUIRED)
  target_link_libraries(strata_private_deps INTERFACE CUDA::cublas CUDNN::headers CUDA::nvtx3 ${CMAKE_DL_LIBS})
endif()

# GoogleTest, for the test suites only.
if(STRATA_BUILD_TESTS)
  find_package(GTest 1.10 QUIET)
  if(NOT GTest_FOUND)
    set(_gtest_source "")
    foreach(_candidate "${STRATA_DEPS_DIR}/googletest" /usr/src/googletest)
      if(EXISTS "${_candidate}/CMakeLists.txt")
        set(_gtest_source "${_candidate}")
        break()
      endif()
    endforeach()
    set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
    set(BUILD_GMOCK ON CACHE BOOL "" FORCE)
    if(_gtest_source)
      message(STATUS "GoogleTest: building from ${_gtest_source}")
      FetchContent_Declare(googletest SOURCE_DIR "${_gtest_source}")
    else()
      message(STATUS "GoogleTest: not installed, fetching 1.14.0")
      FetchContent_Declare(googletest
        GIT_REPOSITORY https://github.com/google/googletest.git
        GIT_TAG v1.14.0
        GIT_SHALLOW TRUE)
    endif()
    FetchContent_MakeAvailable(googletest)
    foreach(_target gtest gmock)
      if(NOT TARGET GTest::${_target})
        add_library(GTest::${_target} ALIAS ${_target})
      endif()
    endforeach()
  endif()
endif()
