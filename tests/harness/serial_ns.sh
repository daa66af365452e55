#!/bin/bash
# serial_ns.sh <command> [args...]
#
# Runs <command> in a private mount namespace where /dev is a fresh tmpfs, so a test can make
# /dev/ttyS0 a symlink to a pty slave (libserialport only accepts a /dev/X that has
# /sys/class/tty/X) and remove / replace it to simulate a USB unplug and replug.
# The command runs with LD_PRELOAD=<ptyshim.so> (path from $PTYSHIM, else ptyshim.so next to
# this script), and with MP_SERIAL_HARNESS=1 so the test can check where it runs.
#
# Needs root (unshare -m) or unprivileged user namespaces (unshare -rm). When neither works it
# says so loudly and exits non-zero: the serial tests are then NOT RUN, never "passed".
# Nothing outside the namespace is changed; the namespace ends with the command.
set -eu

loud_fail() {
  {
    echo "########################################################################"
    echo "### SERIAL TESTS NEED ROOT OR USER NAMESPACES: NOT RUN"
    echo "### $*"
    echo "########################################################################"
  } >&2
  exit 2
}

if [ $# -lt 1 ]; then
  echo "usage: $0 <command> [args...]" >&2
  exit 2
fi

script_dir=$(cd "$(dirname "$0")" && pwd)
self="$script_dir/$(basename "$0")"

if [ "${MP_SERIAL_NS_INNER:-}" != "1" ]; then
  # Outside: re-execute this script in a new mount namespace.
  command -v unshare >/dev/null 2>&1 || loud_fail "unshare(1) is not installed"
  if [ "$(id -u)" = "0" ] && unshare -m true 2>/dev/null; then
    MP_SERIAL_NS_INNER=1 exec unshare -m "$self" "$@"
  elif unshare -rm true 2>/dev/null; then
    MP_SERIAL_NS_INNER=1 exec unshare -rm "$self" "$@"
  else
    loud_fail "neither 'unshare -m' (as root) nor 'unshare -rm' works here (uid $(id -u))"
  fi
fi

# Inside the private mount namespace from here on.
unset MP_SERIAL_NS_INNER
[ -e /sys/class/tty/ttyS0 ] || loud_fail "/sys/class/tty/ttyS0 is missing: libserialport needs it"

shim="${PTYSHIM:-$script_dir/ptyshim.so}"
[ -f "$shim" ] || loud_fail "pty shim not found at '$shim' (build it: gcc -shared -fPIC -o ptyshim.so ptyshim.c -ldl, or set PTYSHIM)"
shim=$(cd "$(dirname "$shim")" && pwd)/$(basename "$shim")

mount --make-rprivate / || loud_fail "mount --make-rprivate / failed"

# Keep the real /dev reachable, then put a tmpfs over /dev and bring back what tests need.
save=$(mktemp -d /tmp/mp-serial-ns.XXXXXX)
mkdir "$save/dev"
mount --rbind /dev "$save/dev" || loud_fail "cannot bind-mount /dev"
mount -t tmpfs -o mode=755 mp-serial-dev /dev || loud_fail "cannot mount a tmpfs on /dev"
mkdir /dev/pts /dev/shm
mount --bind "$save/dev/pts" /dev/pts || loud_fail "cannot bring back /dev/pts"
if [ -d "$save/dev/shm" ]; then mount --bind "$save/dev/shm" /dev/shm || true; fi
for node in null zero full random urandom tty; do
  if [ -e "$save/dev/$node" ]; then
    touch "/dev/$node"
    mount --bind "$save/dev/$node" "/dev/$node" || loud_fail "cannot bring back /dev/$node"
  fi
done
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
ln -s pts/ptmx /dev/ptmx
# /dev/pts/ptmx may be mode 000: fine for real root, not for the root of a user namespace
# (unshare -rm), which gets a fresh devpts instance of its own instead (allowed there).
if ! (exec 3<>/dev/ptmx) 2>/dev/null; then
  umount /dev/pts
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 mp-serial-pts /dev/pts ||
    loud_fail "cannot mount a devpts instance for /dev/ptmx"
  (exec 3<>/dev/ptmx) 2>/dev/null || loud_fail "cannot open /dev/ptmx inside the namespace"
fi
# The saved tree is no longer needed; detach it so nothing in the test can reach the real /dev.
umount -l "$save/dev" 2>/dev/null || true
rmdir "$save/dev" "$save" 2>/dev/null || true

# An ASan-instrumented test wants its runtime first in the preload list.
preload="$shim"
if command -v ldd >/dev/null 2>&1; then
  target=$(command -v "$1" 2>/dev/null || true)
  if [ -n "$target" ] && [ -f "$target" ]; then
    asan=$(ldd "$target" 2>/dev/null | awk '/libasan\.so/ {print $3; exit}')
    if [ -n "$asan" ]; then preload="$asan:$shim"; fi
  fi
fi
if [ -n "${LD_PRELOAD:-}" ]; then preload="$preload:$LD_PRELOAD"; fi

export MP_SERIAL_HARNESS=1
LD_PRELOAD="$preload" exec "$@"
