# Warnings for Strata's own code (not for third-party headers, which come in as SYSTEM).
function(strata_enable_warnings target)
  set(cxx_warnings -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Wold-style-cast
                   -Wcast-align -Woverloaded-virtual)
  if(STRATA_WARNINGS_AS_ERRORS)
    list(APPEND cxx_warnings -Werror)
  endif()
  target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${cxx_warnings}>")
  if(NOT STRATA_BACKEND_SIM)
    # nvcc: warn on host code through the host compiler; device code through ptxas.
    set(cuda_warnings -Xcompiler=-Wall,-Wextra -Xptxas=-warn-spills --Werror=all-warnings)
    if(NOT STRATA_WARNINGS_AS_ERRORS)
      list(REMOVE_ITEM cuda_warnings --Werror=all-warnings)
    endif()
    target_compile_options(${target} PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${cuda_warnings}>")
  endif()
endfunction()
