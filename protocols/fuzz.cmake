# libFuzzer targets (configure with -DMP_FUZZ=ON and CXX=clang++): every
# protocols/<name>/fuzz/fuzz_*.cpp is one; scripts/fuzz runs them with the seeds listed in
# protocols/<name>/fuzz/seeds.
file(GLOB fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/protocols/*/fuzz/fuzz_*.cpp)
foreach(src ${fuzz_srcs})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE mp_protocols mp_process)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endforeach()
include(${CMAKE_SOURCE_DIR}/serve/fuzz.cmake)  # serve/fuzz/: the accounts parsers
