# For CTest: runs PROGRAM --data DATA ARGS (ARGS one string, split like a shell would) when
# DATA holds CIFAR-10's binary files, and passes when it exits 0; without them it prints
# "skipped: ..." (the test's SKIP_REGULAR_EXPRESSION).
#   cmake -DPROGRAM=... -DDATA=... "-DARGS=--net seed" -P run_with_data.cmake
#   cmake -DPROGRAM=python3 -DSCRIPT=reference.py -DDATA=... "-DARGS=--quick" -P run_with_data.cmake
if(NOT EXISTS "${DATA}/cifar-10-batches-bin/test_batch.bin")
  message("skipped: no CIFAR-10 binary files in ${DATA} (the fixture cifar10_real_data converts ../shared/data "
          "there when it is present)")
  return()
endif()
separate_arguments(args UNIX_COMMAND "${ARGS}")
# SCRIPT (optional): PROGRAM is its interpreter, run as PROGRAM SCRIPT --data DATA ARGS.
set(script "")
if(DEFINED SCRIPT)
  set(script "${SCRIPT}")
endif()
execute_process(COMMAND "${PROGRAM}" ${script} --data "${DATA}" ${args} RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} ${script} --data ${DATA} ${ARGS}: exited ${status}")
endif()
