# For CTest: the fixture cifar10_real_data (tests/samples/CMakeLists.txt). Converts the
# development copy of CIFAR-10 beside the repository (SHARED: ../shared/data, read-only) into
# OUT in the build tree, once: a later run finds OUT complete and does nothing. Prints
# "skipped: ..." (the test's SKIP_REGULAR_EXPRESSION) when there is no copy or no PIL.
#   cmake -DSHARED=../shared/data -DOUT=build/tests/samples/cifar10-data -P convert_cifar10_data.cmake
set(script "${SHARED}/make_cifar10_bin.py")
if(NOT EXISTS "${script}" OR NOT EXISTS "${SHARED}/cifar10-jpeg.tar.gz")
  message("skipped: no CIFAR-10 copy at ${SHARED} (the development data beside the repository); "
          "the tests that need it skip too")
  return()
endif()
if(EXISTS "${OUT}/cifar-10-batches-bin/test_batch.bin")
  message(STATUS "converted earlier: ${OUT}")
  return()
endif()
execute_process(COMMAND /usr/bin/python3 -c "import PIL" RESULT_VARIABLE pil OUTPUT_QUIET ERROR_QUIET)
if(NOT pil EQUAL 0)
  message("skipped: /usr/bin/python3 cannot import PIL: install Debian's python3-pil (.ci/install-deps.sh does)")
  return()
endif()
# Written beside OUT and renamed into place, so that OUT is complete or absent.
set(scratch "${OUT}.partial")
file(REMOVE_RECURSE "${scratch}")
execute_process(COMMAND /usr/bin/python3 "${script}" "${scratch}" RESULT_VARIABLE status OUTPUT_QUIET
                ERROR_VARIABLE errors)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "/usr/bin/python3 ${script} ${scratch} exited ${status}:\n${errors}")
endif()
file(REMOVE_RECURSE "${OUT}")
file(RENAME "${scratch}" "${OUT}")
message(STATUS "converted ${SHARED} into ${OUT}")
