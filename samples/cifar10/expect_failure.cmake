# For CTest: runs PROGRAM with ARGS (one string, split like a shell would) and passes when it
# exits non-zero with output matching the regular expression EXPECT.
#   cmake -DPROGRAM=... "-DARGS=--net vgg" "-DEXPECT=not in" -P expect_failure.cmake
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND "${PROGRAM}" ${args} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(status EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} ${ARGS}: exited 0, expected a failure\n${out}${err}")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "${PROGRAM} ${ARGS}: exited ${status} without saying '${EXPECT}':\n${out}${err}")
endif()
message(STATUS "exited ${status}, as expected:\n${err}")
