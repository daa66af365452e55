# libFuzzer targets (configure with -DMP_FUZZ=ON and CXX=clang++): every
# protocols/<name>/fuzz/fuzz_*.cpp is one; scripts/fuzz runs them with the seeds listed in
# protocols/<name>/fuzz/seeds. history/fuzz/fuzz_*.cpp (the import parser) likewise.
# (the history code without its worker: the fuzz build has no bus and no config reader)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
mp_component_library(mp_history history)
target_link_libraries(mp_history PUBLIC mp_common PkgConfig::SQLITE3 ZLIB::ZLIB)
file(GLOB fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/protocols/*/fuzz/fuzz_*.cpp
     ${CMAKE_SOURCE_DIR}/history/fuzz/fuzz_*.cpp)
foreach(src ${fuzz_srcs})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  if(src MATCHES "/history/fuzz/")
    target_link_libraries(${name} PRIVATE mp_history)
  else()
    target_link_libraries(${name} PRIVATE mp_protocols mp_process)
  endif()
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endforeach()
include(${CMAKE_SOURCE_DIR}/serve/fuzz.cmake)  # serve/fuzz/: the accounts parsers
