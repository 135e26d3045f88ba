# runnel build helpers: one function per kind of target.
#
#   runnel_library(NAME n [SRCS a.cc ...] [DEPS d ...])
#       STATIC library (INTERFACE library when SRCS is empty). Include root is
#       the repo root, so `#include "core/record.h"` works; DEPS are linked
#       PUBLIC (INTERFACE for header-only libraries); PIC is on.
#   runnel_test(NAME n SRCS ... [DEPS ...] [LABELS ...])
#       gtest executable linked with GTest::gtest_main, GTest::gmock and DEPS;
#       each TEST is discovered as its own ctest test (timeout 300 s).
#       Defines RUNNEL_BINARY_DIR="<build dir>" so tests can fork/exec
#       helper binaries, e.g. RUNNEL_BINARY_DIR "/tools/runnel-demo".
#   runnel_bench(NAME n SRCS ... [DEPS ...])
#       Google Benchmark executable (benchmark::benchmark; bring your own
#       main or BENCHMARK_MAIN()).
#   runnel_executable(NAME n SRCS ... [DEPS ...])
#       plain executable.
#
# Every compiled target gets RUNNEL_WARNING_FLAGS (warnings are errors when
# runnel is the top-level project; RUNNEL_WERROR).
# RUNNEL_SANITIZE (none|asan|tsan) adds sanitizer flags to every target
# defined after this file is included.

include_guard(GLOBAL)
include(GoogleTest)

# Warnings are errors when runnel is built on its own; a project that adds
# it with add_subdirectory builds it with its own flags and compiler, where a
# warning runnel never saw must not stop that build (RUNNEL_WERROR=ON asks
# for them there too).
option(RUNNEL_WERROR "Treat warnings as errors in runnel's own targets" ${PROJECT_IS_TOP_LEVEL})
set(RUNNEL_WARNING_FLAGS -Wall -Wextra -Wpedantic -Wno-missing-field-initializers)
if(RUNNEL_WERROR)
  list(APPEND RUNNEL_WARNING_FLAGS -Werror)
endif()

# ---------------------------------------------------------------------------
# Sanitizers (global: compile and link options for all later targets).
# ---------------------------------------------------------------------------
set(RUNNEL_TEST_ENVIRONMENT "")
if(RUNNEL_SANITIZE STREQUAL "asan")
  # -g1: line tables and function names (all a sanitizer report shows), about a
  # quarter less compile time than -g for these builds.
  add_compile_options(-O1 -g1 -fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined -fno-sanitize-recover=all)
  set(RUNNEL_TEST_ENVIRONMENT
    "ASAN_OPTIONS=detect_leaks=1:abort_on_error=1"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
elseif(RUNNEL_SANITIZE STREQUAL "tsan")
  add_compile_options(-O1 -g1 -fsanitize=thread)
  add_link_options(-fsanitize=thread)
  set(RUNNEL_TEST_ENVIRONMENT
    "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=${PROJECT_SOURCE_DIR}/tests/tsan.supp")
elseif(NOT RUNNEL_SANITIZE STREQUAL "none" AND NOT RUNNEL_SANITIZE STREQUAL "")
  message(FATAL_ERROR "RUNNEL_SANITIZE must be none, asan or tsan (got '${RUNNEL_SANITIZE}')")
endif()

if(NOT RUNNEL_SANITIZE STREQUAL "none" AND NOT RUNNEL_SANITIZE STREQUAL "")
  # Instrumentation makes gcc 12's flow-sensitive warnings report false
  # positives, and -Wtsan flags every std::atomic_thread_fence (TSan cannot
  # model fences). They stay visible here and remain errors in the default
  # build, which is the one that guards warning hygiene.
  list(APPEND RUNNEL_WARNING_FLAGS
    -Wno-error=maybe-uninitialized -Wno-error=stringop-overflow -Wno-error=array-bounds)
  if(RUNNEL_SANITIZE STREQUAL "tsan")
    list(APPEND RUNNEL_WARNING_FLAGS -Wno-error=tsan)
  endif()
endif()

# ---------------------------------------------------------------------------
# Internals.
# ---------------------------------------------------------------------------
macro(_runnel_parse fn)
  cmake_parse_arguments(PARSE_ARGV 0 RT "" "NAME" "SRCS;DEPS;LABELS")
  if(NOT RT_NAME)
    message(FATAL_ERROR "${fn}: NAME is required")
  endif()
  if(RT_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "${fn}(${RT_NAME}): unknown arguments: ${RT_UNPARSED_ARGUMENTS}")
  endif()
endmacro()

function(_runnel_compiled_target name)
  # Installed, the headers keep their layout under include/runnel
  # (`#include "ipc/bus.h"` either way).
  target_include_directories(${name} PUBLIC "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>"
                                            "$<INSTALL_INTERFACE:include/runnel>")
  target_compile_options(${name} PRIVATE ${RUNNEL_WARNING_FLAGS})
endfunction()

# ---------------------------------------------------------------------------
# Public helpers.
# ---------------------------------------------------------------------------
function(runnel_library)
  _runnel_parse(runnel_library)
  if(RT_LABELS)
    message(FATAL_ERROR "runnel_library(${RT_NAME}): LABELS is only for runnel_test")
  endif()
  if(RT_SRCS)
    add_library(${RT_NAME} STATIC ${RT_SRCS})
    _runnel_compiled_target(${RT_NAME})
    set_target_properties(${RT_NAME} PROPERTIES POSITION_INDEPENDENT_CODE ON)
    target_link_libraries(${RT_NAME} PUBLIC ${RT_DEPS})
  else()
    add_library(${RT_NAME} INTERFACE)
    target_include_directories(${RT_NAME} INTERFACE "$<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}>"
                                                    "$<INSTALL_INTERFACE:include/runnel>")
    target_link_libraries(${RT_NAME} INTERFACE ${RT_DEPS})
  endif()
endfunction()

function(runnel_executable)
  _runnel_parse(runnel_executable)
  if(NOT RT_SRCS)
    message(FATAL_ERROR "runnel_executable(${RT_NAME}): SRCS is required")
  endif()
  add_executable(${RT_NAME} ${RT_SRCS})
  _runnel_compiled_target(${RT_NAME})
  target_link_libraries(${RT_NAME} PRIVATE ${RT_DEPS})
endfunction()

function(runnel_bench)
  _runnel_parse(runnel_bench)
  if(NOT RT_SRCS)
    message(FATAL_ERROR "runnel_bench(${RT_NAME}): SRCS is required")
  endif()
  add_executable(${RT_NAME} ${RT_SRCS})
  _runnel_compiled_target(${RT_NAME})
  target_link_libraries(${RT_NAME} PRIVATE benchmark::benchmark ${RT_DEPS})
endfunction()

function(runnel_test)
  _runnel_parse(runnel_test)
  if(NOT RT_SRCS)
    message(FATAL_ERROR "runnel_test(${RT_NAME}): SRCS is required")
  endif()
  add_executable(${RT_NAME} ${RT_SRCS})
  _runnel_compiled_target(${RT_NAME})
  target_link_libraries(${RT_NAME} PRIVATE GTest::gtest_main GTest::gmock ${RT_DEPS})
  target_compile_definitions(${RT_NAME} PRIVATE RUNNEL_BINARY_DIR="${PROJECT_BINARY_DIR}")

  gtest_discover_tests(${RT_NAME}
    DISCOVERY_TIMEOUT 60
    TEST_LIST ${RT_NAME}_TESTS
    PROPERTIES TIMEOUT 300)

  # gtest_discover_tests flattens PROPERTIES into one list, so list-valued
  # properties (several LABELS, the two ASan/UBSan variables) cannot pass
  # through it. Set them from a ctest include file that runs after the
  # discovered tests are defined.
  set(props "")
  if(RT_LABELS)
    string(APPEND props " LABELS [==[${RT_LABELS}]==]")
  endif()
  if(RUNNEL_TEST_ENVIRONMENT)
    string(APPEND props " ENVIRONMENT [==[${RUNNEL_TEST_ENVIRONMENT}]==]")
  endif()
  if(props)
    set(props_file "${CMAKE_CURRENT_BINARY_DIR}/${RT_NAME}_runnel_props.cmake")
    file(WRITE "${props_file}"
      "if(NOT \"\${${RT_NAME}_TESTS}\" STREQUAL \"\")\n"
      "  set_tests_properties(\${${RT_NAME}_TESTS} PROPERTIES${props})\n"
      "endif()\n")
    set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${props_file}")
  endif()
endfunction()
