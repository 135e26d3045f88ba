# Installing runnel: the static libraries, the public headers (under
# include/runnel, keeping their layout: `#include "ipc/bus.h"`), a CMake
# package (find_package(runnel) -> runnel::runnel, runnel::core), and the
# runnel tool. See docs/api.md.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(RUNNEL_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/runnel")

set_target_properties(runnel_ipc PROPERTIES EXPORT_NAME runnel)
set_target_properties(runnel_core PROPERTIES EXPORT_NAME core)
set_target_properties(runnel_persistence PROPERTIES EXPORT_NAME persistence)
set_target_properties(runnel_persister PROPERTIES EXPORT_NAME persister)
set_target_properties(runnel_dep_uring PROPERTIES EXPORT_NAME dep_uring)
set_target_properties(runnel_dep_isal PROPERTIES EXPORT_NAME dep_isal)

install(TARGETS runnel_ipc runnel_core runnel_persistence runnel_persister
                runnel_dep_uring runnel_dep_isal
        EXPORT runnelTargets
        ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}")
foreach(dir IN ITEMS core persistence ipc)
  install(DIRECTORY "${PROJECT_SOURCE_DIR}/${dir}/"
          DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/runnel/${dir}"
          FILES_MATCHING PATTERN "*.h")
endforeach()
install(EXPORT runnelTargets NAMESPACE runnel:: DESTINATION "${RUNNEL_CMAKE_INSTALL_DIR}")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/runnelConfig.cmake.in"
                              "${PROJECT_BINARY_DIR}/runnelConfig.cmake"
                              INSTALL_DESTINATION "${RUNNEL_CMAKE_INSTALL_DIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/runnelConfigVersion.cmake"
                                 COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/runnelConfig.cmake"
              "${PROJECT_BINARY_DIR}/runnelConfigVersion.cmake"
        DESTINATION "${RUNNEL_CMAKE_INSTALL_DIR}")

if(TARGET runnel)
  install(TARGETS runnel RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
endif()
