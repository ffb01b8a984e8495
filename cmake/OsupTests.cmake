# osup_add_tests(<target> LABEL <unit|integration|qemu> SOURCES ... LIBS ...)
# One Catch2 executable per (module, tier); every test case becomes a CTest test with the label.
# The unit-tier executables are also gathered in the target osup_unit_tests, which builds only
# them (scripts/test-aarch64-unit.sh builds it for arm64).
function(osup_add_tests target)
  if(NOT OSUP_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(T "" "LABEL" "SOURCES;LIBS" ${ARGN})
  add_executable(${target} ${T_SOURCES})
  target_link_libraries(${target} PRIVATE ${T_LIBS} osup_testsupport osup_catch_main Catch2::Catch2)
  target_compile_definitions(${target} PRIVATE
    OSUP_SOURCE_DIR="${CMAKE_SOURCE_DIR}" OSUP_BINARY_DIR="${CMAKE_BINARY_DIR}")
  catch_discover_tests(${target}
    PROPERTIES LABELS ${T_LABEL}
    EXTRA_ARGS --use-colour no)
  if(T_LABEL STREQUAL "unit")
    if(NOT TARGET osup_unit_tests)
      add_custom_target(osup_unit_tests)
    endif()
    add_dependencies(osup_unit_tests ${target})
  endif()
endfunction()
