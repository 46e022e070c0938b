#[=======================================================================[.rst:
FindCUDNN
---------

Finds NVIDIA cuDNN's headers, and its library where there is one. Strata compiles against
the headers only and loads the library at run time (core/cudnn_loader.h), so only the
headers are required; the library's folder, when found, is where the loader looks last.

Imported targets: ``CUDNN::headers`` (the include folder, always) and ``CUDNN::cudnn``
(headers and library, only when the library was found).

Search hints: ``CUDNN_ROOT`` (CMake or environment variable), the CUDA toolkit folders,
and the ``nvidia/cudnn`` folder of a Python installation (PyTorch's wheels ship cuDNN
there, without an unversioned ``libcudnn.so``).

Result variables: ``CUDNN_FOUND`` (the headers were found), ``CUDNN_VERSION``,
``CUDNN_MAJOR_VERSION``, ``CUDNN_INCLUDE_DIR``, ``CUDNN_LIBRARY`` (``CUDNN_LIBRARY-NOTFOUND``
without one). The version is read from ``cudnn_version.h``.
#]=======================================================================]

set(_cudnn_hints ${CUDNN_ROOT} $ENV{CUDNN_ROOT})
if(CUDAToolkit_LIBRARY_ROOT)
  list(APPEND _cudnn_hints "${CUDAToolkit_LIBRARY_ROOT}")
endif()
find_package(Python3 QUIET COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    OUTPUT_VARIABLE _cudnn_site OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(_cudnn_site)
    list(APPEND _cudnn_hints "${_cudnn_site}/nvidia/cudnn" "${_cudnn_site}/nvidia/cu13" "${_cudnn_site}/nvidia/cu12")
  endif()
endif()

find_path(CUDNN_INCLUDE_DIR cudnn_version.h
  HINTS ${_cudnn_hints} ${CUDAToolkit_INCLUDE_DIRS}
  PATH_SUFFIXES include)
find_library(CUDNN_LIBRARY
  NAMES cudnn libcudnn.so.9 NAMES_PER_DIR
  HINTS ${_cudnn_hints} ${CUDAToolkit_LIBRARY_DIR}
  PATH_SUFFIXES lib lib64 lib/x64)

if(CUDNN_INCLUDE_DIR AND EXISTS "${CUDNN_INCLUDE_DIR}/cudnn_version.h")
  file(STRINGS "${CUDNN_INCLUDE_DIR}/cudnn_version.h" _cudnn_lines REGEX "^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) +[0-9]+")
  foreach(_part MAJOR MINOR PATCHLEVEL)
    string(REGEX REPLACE ".*#define CUDNN_${_part} +([0-9]+).*" "\\1" _cudnn_${_part} "${_cudnn_lines}")
  endforeach()
  set(CUDNN_VERSION "${_cudnn_MAJOR}.${_cudnn_MINOR}.${_cudnn_PATCHLEVEL}")
  set(CUDNN_MAJOR_VERSION "${_cudnn_MAJOR}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUDNN
  REQUIRED_VARS CUDNN_INCLUDE_DIR
  VERSION_VAR CUDNN_VERSION)

if(CUDNN_FOUND AND NOT TARGET CUDNN::headers)
  add_library(CUDNN::headers INTERFACE IMPORTED)
  set_target_properties(CUDNN::headers PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")
endif()
if(CUDNN_FOUND AND CUDNN_LIBRARY AND NOT TARGET CUDNN::cudnn)
  add_library(CUDNN::cudnn UNKNOWN IMPORTED)
  set_target_properties(CUDNN::cudnn PROPERTIES
    IMPORTED_LOCATION "${CUDNN_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")
endif()
mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)
