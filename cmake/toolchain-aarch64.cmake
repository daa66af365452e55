# Cross build for 64-bit ARM (Raspberry Pi 3/4/5/Zero 2 with 64-bit Raspberry Pi OS) on a
# Debian 12 amd64 machine with Debian multiarch:
#   dpkg --add-architecture arm64; apt-get install crossbuild-essential-arm64 <-dev>:arm64
# (scripts/setup --cross arm64 does it). protoc runs from the host. Tests run under qemu-user.
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(MP_TRIPLET aarch64-linux-gnu)
include(${CMAKE_CURRENT_LIST_DIR}/cross-common.cmake)
