# `cmake --install BUILD --prefix PREFIX`: the floors' shared libraries, their public headers
# under PREFIX/include/moegrad/ (so "core/tensor.h" resolves as in the source tree), the moegrad
# program, a CMake package (find_package(moegrad) -> moegrad::moegrad) and moegrad.pc.
# Included by the top-level CMakeLists.txt after the floors and tools/ exist.
include(CMakePackageConfigHelpers)

# The umbrella target outside code links: every floor, plus CLI11 for tools/cli.h (the examples'
# command lines). Named moegrad_all here because `moegrad` is the program; exported as moegrad::moegrad.
add_library(moegrad_all INTERFACE)
target_link_libraries(moegrad_all INTERFACE moegrad_core moegrad_autograd moegrad_dist moegrad_layers
                      moegrad_optim moegrad_train CLI11::CLI11)
set_target_properties(moegrad_all PROPERTIES EXPORT_NAME moegrad)

# A sanitizer build's libraries need the ASan/UBSan runtime in the program that loads them: the
# installed targets and moegrad.pc pass the flags on (the build tree's programs get them anyway).
set(MOEGRAD_PC_SANITIZE "")
if(MOEGRAD_SANITIZE)
  target_compile_options(moegrad_core INTERFACE "$<INSTALL_INTERFACE:-fsanitize=address,undefined;-fno-omit-frame-pointer>")
  target_link_options(moegrad_core INTERFACE $<INSTALL_INTERFACE:-fsanitize=address,undefined>)
  set(MOEGRAD_PC_SANITIZE " -fsanitize=address,undefined")
endif()

set(MOEGRAD_FLOORS core autograd dist layers optim train)
set(MOEGRAD_INSTALL_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR}/moegrad)
set(MOEGRAD_INSTALL_CMAKEDIR ${CMAKE_INSTALL_LIBDIR}/cmake/moegrad)

install(TARGETS moegrad_core moegrad_autograd moegrad_dist moegrad_layers moegrad_optim moegrad_train moegrad_all
        EXPORT moegradTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The program is not in the export set: its name would clash with moegrad::moegrad.
install(TARGETS moegrad RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# Headers: every floor's *.h except those that include a private dependency's header (MPI,
# NCCL, HDF5, the CUDA runtime); no public header reaches them (tests/tools/check_install.py
# compiles one file that includes every installed header).
foreach(floor IN LISTS MOEGRAD_FLOORS)
  file(GLOB_RECURSE headers RELATIVE ${PROJECT_SOURCE_DIR} CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/${floor}/*.h)
  list(FILTER headers EXCLUDE REGEX "^dist/(mpi|nccl)/|^train/hdf5_detail\\.h$|^core/cuda/check\\.h$")
  foreach(header IN LISTS headers)
    get_filename_component(dir ${header} DIRECTORY)
    install(FILES ${PROJECT_SOURCE_DIR}/${header} DESTINATION ${MOEGRAD_INSTALL_INCLUDEDIR}/${dir})
  endforeach()
endforeach()
install(FILES ${PROJECT_SOURCE_DIR}/tools/cli.h DESTINATION ${MOEGRAD_INSTALL_INCLUDEDIR}/tools)

install(EXPORT moegradTargets NAMESPACE moegrad:: DESTINATION ${MOEGRAD_INSTALL_CMAKEDIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/moegradConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/moegradConfig.cmake
                              INSTALL_DESTINATION ${MOEGRAD_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/moegradConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/moegradConfig.cmake ${PROJECT_BINARY_DIR}/moegradConfigVersion.cmake
        DESTINATION ${MOEGRAD_INSTALL_CMAKEDIR})

# pkg-config: prefix relative to the .pc file, so `cmake --install --prefix ANY` works.
file(RELATIVE_PATH MOEGRAD_PC_TO_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" MOEGRAD_PC_TO_PREFIX "${MOEGRAD_PC_TO_PREFIX}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/moegrad.pc.in ${PROJECT_BINARY_DIR}/moegrad.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/moegrad.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
