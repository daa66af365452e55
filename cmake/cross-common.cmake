# Shared part of the cross toolchain files: MP_TRIPLET (and MP_QEMU) set by the includer.
set(CMAKE_C_COMPILER ${MP_TRIPLET}-gcc)
set(CMAKE_CXX_COMPILER ${MP_TRIPLET}-g++)

# Toolchain files are read again for try_compile projects: pass the sysroot on.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES MP_SYSROOT)
if(NOT MP_SYSROOT AND DEFINED ENV{MP_SYSROOT})
  set(MP_SYSROOT $ENV{MP_SYSROOT})
endif()

if(MP_SYSROOT)
  # a private sysroot: the target's packages unpacked into one folder
  set(CMAKE_SYSROOT ${MP_SYSROOT})
  set(CMAKE_FIND_ROOT_PATH ${MP_SYSROOT})
  set(ENV{PKG_CONFIG_SYSROOT_DIR} ${MP_SYSROOT})
  set(ENV{PKG_CONFIG_LIBDIR}
      "${MP_SYSROOT}/usr/lib/${MP_TRIPLET}/pkgconfig:${MP_SYSROOT}/usr/share/pkgconfig")
  set(mp_qemu_ld_prefix ${MP_SYSROOT})
else()
  # Debian multiarch: the target's libraries live in /usr/lib/<triplet> of this machine, its
  # headers partly in /usr/include (arch-independent ones): both roots are needed.
  set(CMAKE_FIND_ROOT_PATH /usr/${MP_TRIPLET} /)
  set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${MP_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
endif()
# programs (protoc) from the host, libraries and headers from the target
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest runs the target's test programs under qemu-user (binfmt_misc would do it too, but
# only where it is registered)
if(NOT MP_QEMU)
  set(MP_QEMU qemu-${CMAKE_SYSTEM_PROCESSOR}-static)
endif()
find_program(MP_QEMU_PATH ${MP_QEMU})
if(MP_QEMU_PATH)
  if(mp_qemu_ld_prefix)
    set(CMAKE_CROSSCOMPILING_EMULATOR ${MP_QEMU_PATH} -L ${mp_qemu_ld_prefix})
  else()
    set(CMAKE_CROSSCOMPILING_EMULATOR ${MP_QEMU_PATH})
  endif()
endif()
