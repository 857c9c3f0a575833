# Helpers shared by every folder: the LibTorch precompiled header and the test
# declaration. Keep this file small; folders own their own targets.

# ---- precompiled LibTorch header ----------------------------------------------
# One PCH for every target that includes LibTorch: each such translation unit
# costs ~20 s without it on a 2-core machine. Targets opt in with
# shardlm_use_torch_pch(<target>).
add_library(shardlm_torch_pch STATIC ${CMAKE_CURRENT_LIST_DIR}/torch_pch.cpp)
target_link_libraries(shardlm_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_precompile_headers(shardlm_torch_pch PRIVATE ${CMAKE_CURRENT_LIST_DIR}/torch_pch.h)

function(shardlm_use_torch_pch target)
  target_precompile_headers(${target} REUSE_FROM shardlm_torch_pch)
endfunction()

# ---- unity builds ------------------------------------------------------------------
# A cold build spends most of its time in what every LibTorch translation unit
# repeats: loading the precompiled header and compiling the same inline LibTorch
# functions at -O2. shardlm_unity(<target>) compiles a target's sources in
# batches of SHARDLM_UNITY_BATCH files, one translation unit each; sources that
# skip the precompiled header are batched apart from those that use it. Turn it
# off (-DSHARDLM_UNITY=OFF) for an edit-compile loop on one file, where a batch
# would recompile its neighbours too. Measured in bench/RESULTS.md.
option(SHARDLM_UNITY "Compile the library targets in batches of sources (unity build)" ON)
set(SHARDLM_UNITY_BATCH 8 CACHE STRING "Sources per unity translation unit")
function(shardlm_unity target)
  if(NOT SHARDLM_UNITY)
    return()
  endif()
  get_target_property(sources ${target} SOURCES)
  set(plain "")
  set(pch "")
  foreach(src IN LISTS sources)
    if(NOT src MATCHES "\\.(cpp|cc|cxx)$")
      continue()
    endif()
    get_source_file_property(skip ${src} SKIP_PRECOMPILE_HEADERS)
    get_source_file_property(alone ${src} SKIP_UNITY_BUILD_INCLUSION)
    if(alone)
      continue()
    elseif(skip)
      list(APPEND plain ${src})
    else()
      list(APPEND pch ${src})
    endif()
  endforeach()
  foreach(kind plain pch)
    set(i 0)
    foreach(src IN LISTS ${kind})
      math(EXPR batch "${i} / ${SHARDLM_UNITY_BATCH}")
      set_source_files_properties(${src} PROPERTIES UNITY_GROUP "${kind}_${batch}")
      if(kind STREQUAL "plain")
        # CMake gives a unity file the target's precompiled header whatever its
        # sources say; a property set beforehand on the file it will generate is kept.
        set_source_files_properties(
          ${CMAKE_CURRENT_BINARY_DIR}/CMakeFiles/${target}.dir/Unity/unity_plain_${batch}_cxx.cxx
          PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
      endif()
      math(EXPR i "${i} + 1")
    endforeach()
  endforeach()
  set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_MODE GROUP)
  # GCC takes an included .cpp for a header and warns when a class there holds
  # a type from that file's anonymous namespace; within one library it is fine.
  target_compile_options(${target} PRIVATE $<$<CXX_COMPILER_ID:GNU>:-Wno-subobject-linkage>)
endfunction()

# ---- test time limits under ASan ------------------------------------------------
# A sanitizer build runs a test 2-5x slower (tests/sanitizer.h scales the
# tests' own wall-clock limits): every ctest TIMEOUT of a test directory is
# multiplied by SHARDLM_TEST_TIMEOUT_SCALE when that directory's CMakeLists
# ends. CMake 3.25 sets a test's properties only from its own directory, hence
# a deferred call per directory: shardlm_add_test schedules it, and a test
# directory without one calls shardlm_test_directory() itself.
if(SHARDLM_ASAN)
  set(SHARDLM_TEST_TIMEOUT_SCALE 5)
else()
  set(SHARDLM_TEST_TIMEOUT_SCALE 1)
endif()
function(_shardlm_scale_test_timeouts)
  get_property(tests DIRECTORY PROPERTY TESTS)
  foreach(t IN LISTS tests)
    get_test_property(${t} TIMEOUT seconds)
    if(seconds)
      math(EXPR seconds "${seconds} * ${SHARDLM_TEST_TIMEOUT_SCALE}")
      set_tests_properties(${t} PROPERTIES TIMEOUT ${seconds})
    endif()
  endforeach()
endfunction()
function(shardlm_test_directory)
  get_property(deferred DIRECTORY PROPERTY SHARDLM_TIMEOUTS_DEFERRED)
  if(NOT deferred AND SHARDLM_TEST_TIMEOUT_SCALE GREATER 1)
    set_property(DIRECTORY PROPERTY SHARDLM_TIMEOUTS_DEFERRED TRUE)
    cmake_language(DEFER CALL _shardlm_scale_test_timeouts)
  endif()
endfunction()

# ---- tests ----------------------------------------------------------------------
# shardlm_add_test(<name> EXE <gtest target> [FILTER <gtest filter>]
#                  [MPI_SIZE n] [LABELS l1 l2 ...] [TIMEOUT s] [ARGS ...])
# Registers one ctest entry. With MPI_SIZE it runs under ${MPIEXEC_EXECUTABLE}.
# GoogleTest's "[  SKIPPED ]" marks the entry as skipped, never as passed.
function(shardlm_add_test name)
  cmake_parse_arguments(T "" "EXE;FILTER;MPI_SIZE;TIMEOUT" "LABELS;ARGS" ${ARGN})
  shardlm_test_directory()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set(cmd $<TARGET_FILE:${T_EXE}>)
  if(T_FILTER)
    list(APPEND cmd --gtest_filter=${T_FILTER})
  endif()
  list(APPEND cmd ${T_ARGS})
  if(T_MPI_SIZE)
    set(cmd ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${T_MPI_SIZE} ${MPIEXEC_PREFLAGS} ${cmd})
    list(APPEND T_LABELS mpi)
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  add_test(NAME ${name} COMMAND ${cmd})
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
                       SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]"
                       ENVIRONMENT "OMP_NUM_THREADS=1")
  if(T_MPI_SIZE)
    set_tests_properties(${name} PROPERTIES PROCESSORS ${T_MPI_SIZE})
  endif()
endfunction()
