# Installation and export of the Strata package: libstrata.so, the public headers under
# include/strata/, a CMake package (find_package(Strata) -> Strata::strata) and a
# pkg-config file (strata.pc). tests/consumer/ builds against the result in CI.

include(CMakePackageConfigHelpers)

set(STRATA_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/Strata" CACHE STRING
  "Where StrataConfig.cmake is installed, relative to the prefix")
mark_as_advanced(STRATA_INSTALL_CMAKEDIR)

# The flavour travels with the target too, for consumers that inspect targets rather than
# variables: get_target_property(backend Strata::strata STRATA_BACKEND).
set_property(TARGET strata PROPERTY STRATA_BACKEND "${STRATA_BACKEND}")
set_property(TARGET strata APPEND PROPERTY EXPORT_PROPERTIES STRATA_BACKEND)

# An instrumented libstrata.so needs the sanitizer runtimes loaded first, i.e. every
# executable that links it must itself be linked with -fsanitize. As a usage requirement
# this reaches the build tree's tests and samples and, through the export, installed
# consumers alike. Only the link flags: consumers' own code need not be instrumented.
if(STRATA_SANITIZE)
  set(STRATA_SANITIZER_LINK_FLAGS -fsanitize=address,undefined)
  target_link_options(strata INTERFACE ${STRATA_SANITIZER_LINK_FLAGS})
else()
  set(STRATA_SANITIZER_LINK_FLAGS "")
endif()

# The installed library finds the CUDA and Boost libraries it was linked against
# where they were at build time (e.g. /usr/local/cuda/lib64), not only through ldconfig.
set_property(TARGET strata PROPERTY INSTALL_RPATH_USE_LINK_PATH ON)

# Every header under <part>/include/strata/ is public and must be in the HEADERS file set
# of strata, or it is not installed and consumers of the package cannot compile. (A glob
# for this check only: the file set itself is an explicit list.)
set(_strata_public_headers "")
foreach(_part IN ITEMS core kernels layers)
  file(GLOB_RECURSE _part_headers LIST_DIRECTORIES false "${PROJECT_SOURCE_DIR}/${_part}/include/strata/*.h")
  list(APPEND _strata_public_headers ${_part_headers})
endforeach()
get_target_property(_strata_header_set strata HEADER_SET)
set(_strata_unlisted_headers "")
foreach(_header IN LISTS _strata_public_headers)
  if(NOT _header IN_LIST _strata_header_set)
    file(RELATIVE_PATH _header "${PROJECT_SOURCE_DIR}" "${_header}")
    list(APPEND _strata_unlisted_headers "${_header}")
  endif()
endforeach()
if(_strata_unlisted_headers)
  list(JOIN _strata_unlisted_headers "\n  " _strata_unlisted_headers)
  message(WARNING "Public headers missing from the FILE_SET HEADERS of target strata, so not "
                  "installed (add them to the target_sources(... FILE_SET HEADERS ...) of their "
                  "folder's CMakeLists.txt):\n  ${_strata_unlisted_headers}")
endif()

install(TARGETS strata
  EXPORT StrataTargets
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
  FILE_SET HEADERS DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")

install(EXPORT StrataTargets
  NAMESPACE Strata::
  FILE StrataTargets.cmake
  DESTINATION "${STRATA_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/StrataConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/StrataConfig.cmake"
  INSTALL_DESTINATION "${STRATA_INSTALL_CMAKEDIR}")
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/StrataConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}"
  COMPATIBILITY SameMajorVersion)
install(FILES
    "${PROJECT_BINARY_DIR}/StrataConfig.cmake"
    "${PROJECT_BINARY_DIR}/StrataConfigVersion.cmake"
  DESTINATION "${STRATA_INSTALL_CMAKEDIR}")

# pkg-config. The public headers include the CUDA runtime's headers in both flavours, so
# Cflags carry the toolkit's include folder; the cuda flavour's public API also needs
# cudart at link time, the sim flavour's does not (the simulator defines those calls).
# The prefix is found from the .pc file's own place, so `cmake --install --prefix` works.
file(RELATIVE_PATH STRATA_PC_PREFIX_FROM_PCFILEDIR "/root/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/root")
string(REGEX REPLACE "/$" "" STRATA_PC_PREFIX_FROM_PCFILEDIR "${STRATA_PC_PREFIX_FROM_PCFILEDIR}")
list(GET CUDAToolkit_INCLUDE_DIRS 0 STRATA_PC_CUDA_INCLUDEDIR)
set(STRATA_PC_LIBS "-L\${libdir} -lstrata")
if(NOT STRATA_BACKEND_SIM)
  string(APPEND STRATA_PC_LIBS " -L${CUDAToolkit_LIBRARY_DIR} -lcudart")
endif()
if(STRATA_SANITIZER_LINK_FLAGS)
  list(JOIN STRATA_SANITIZER_LINK_FLAGS " " _strata_sanitizer_link_flags)
  string(APPEND STRATA_PC_LIBS " ${_strata_sanitizer_link_flags}")
endif()
configure_file("${PROJECT_SOURCE_DIR}/cmake/strata.pc.in" "${PROJECT_BINARY_DIR}/strata.pc" @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/strata.pc" DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
