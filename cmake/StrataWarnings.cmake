# Warnings for Strata's own code (not for third-party headers, which come in as SYSTEM).
function(strata_enable_warnings target)
  set(cxx_warnings -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
                   -Wcast-align -Woverloaded-virtual)
  # GCC 12 reports -Wrestrict for std::string concatenation at -O3, a false positive
  # (GCC bug 105651) that appears in Release builds only.
  set(gcc12_false_positives "")
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 12
     AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    set(gcc12_false_positives -Wno-restrict)
    list(APPEND cxx_warnings ${gcc12_false_positives})
  endif()
  if(STRATA_WARNINGS_AS_ERRORS)
    list(APPEND cxx_warnings -Werror)
  endif()
  target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${cxx_warnings}>")
  if(NOT STRATA_BACKEND_SIM)
    # nvcc: warn on host code through the host compiler; device code through ptxas.
    set(cuda_warnings -Xcompiler=-Wall,-Wextra -Xptxas=-warn-spills --Werror=all-warnings)
    if(gcc12_false_positives)
      list(APPEND cuda_warnings -Xcompiler=${gcc12_false_positives})
    endif()
    if(NOT STRATA_WARNINGS_AS_ERRORS)
      list(REMOVE_ITEM cuda_warnings --Werror=all-warnings)
    endif()
    target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${cuda_warnings}>")
  endif()
endfunction()
