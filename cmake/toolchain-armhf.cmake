# Cross build for 32-bit ARM, ARMv7 with hard float (32-bit Raspberry Pi OS on Pi 2/3/4/5/
# Zero 2), on a Debian 12 amd64 machine. Two ways to get the armhf libraries:
#   - Debian multiarch: dpkg --add-architecture armhf; apt-get install <-dev>:armhf
#   - a private sysroot (scripts/cross-sysroot armhf DIR: the same packages unpacked into DIR,
#     for when the armhf index of the mirror cannot be used): -DMP_SYSROOT=DIR
#   cmake -S . -B build-armhf -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-armhf.cmake [-DMP_SYSROOT=DIR]
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(MP_TRIPLET arm-linux-gnueabihf)
set(MP_QEMU qemu-arm-static)
include(${CMAKE_CURRENT_LIST_DIR}/cross-common.cmake)
