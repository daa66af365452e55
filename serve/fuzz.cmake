# libFuzzer targets of serve's accounts (included by protocols/fuzz.cmake): every
# serve/fuzz/fuzz_*.cpp, linked with serve's pure parts (no civetweb, no bus, no history
# database); scripts/fuzz runs them with the seed folders listed in serve/fuzz/seeds.
pkg_check_modules(SODIUM REQUIRED IMPORTED_TARGET libsodium)
set(mp_serve_fuzzed_srcs api auth_crypto auth_gate history login_limiter metric_names prom_text
    relay_control sessions state users)
list(TRANSFORM mp_serve_fuzzed_srcs PREPEND ${CMAKE_SOURCE_DIR}/serve/)
list(TRANSFORM mp_serve_fuzzed_srcs APPEND .cpp)
add_library(mp_serve_fuzzed STATIC ${mp_serve_fuzzed_srcs})
target_include_directories(mp_serve_fuzzed PUBLIC ${CMAKE_SOURCE_DIR})
target_link_libraries(mp_serve_fuzzed PUBLIC mp_common mp_proto PkgConfig::SODIUM)
file(GLOB serve_fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/serve/fuzz/fuzz_*.cpp)
foreach(src ${serve_fuzz_srcs})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_link_libraries(${name} PRIVATE mp_serve_fuzzed)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
endforeach()
