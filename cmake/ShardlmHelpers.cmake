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

# ---- tests ----------------------------------------------------------------------
# shardlm_add_test(<name> EXE <gtest target> [FILTER <gtest filter>]
#                  [MPI_SIZE n] [LABELS l1 l2 ...] [TIMEOUT s] [ARGS ...])
# Registers one ctest entry. With MPI_SIZE it runs under ${MPIEXEC_EXECUTABLE}.
# GoogleTest's "[  SKIPPED ]" marks the entry as skipped, never as passed.
function(shardlm_add_test name)
  cmake_parse_arguments(T "" "EXE;FILTER;MPI_SIZE;TIMEOUT" "LABELS;ARGS" ${ARGN})
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
