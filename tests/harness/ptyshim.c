/* ptyshim: LD_PRELOAD shim that lets libserialport drive a pseudo-terminal like a UART.
 *
 * Tests only; never loaded by the product. Build:
 *   gcc -shared -fPIC -O2 -Wall -Wextra -o ptyshim.so ptyshim.c -ldl
 *
 * Only file descriptors of pty slaves (character devices with majors 136-143) are touched;
 * every other call goes straight to the C library.
 *
 * 1. Modem-control ioctls (TIOCMGET/TIOCMBIS/TIOCMBIC/TIOCMSET): the real ioctl runs first;
 *    only when it fails with ENOTTY/EINVAL (a pty has no modem lines) is success reported
 *    (TIOCMGET then reads as "no lines set"). A real error such as EIO after a hang-up is
 *    passed through unchanged, so the code under test still sees the device go away.
 * 2. tcsetattr/tcgetattr: a pty forces CS8 and clears PARENB, and the caller (glibc /
 *    libserialport) reports EINVAL when the settings did not stick. The shim remembers the
 *    requested character size and parity per device, sends CS8 without parity to the kernel
 *    and reports the requested bits back on tcgetattr, so 7E1 and 8E1 configure cleanly.
 *    What a pty cannot show (parity, 7-bit stripping, framing, baud) stays untested.
 *
 * The symbol mp_ptyshim_loaded lets a test check that the shim is really in the process.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <termios.h>

int mp_ptyshim_loaded = 1;

typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef int (*tcsetattr_fn)(int, int, const struct termios*);
typedef int (*tcgetattr_fn)(int, struct termios*);

static ioctl_fn real_ioctl_ptr(void) {
  static ioctl_fn fn;
  if (!fn) fn = (ioctl_fn)dlsym(RTLD_NEXT, "ioctl");
  return fn;
}
static tcsetattr_fn real_tcsetattr_ptr(void) {
  static tcsetattr_fn fn;
  if (!fn) fn = (tcsetattr_fn)dlsym(RTLD_NEXT, "tcsetattr");
  return fn;
}
static tcgetattr_fn real_tcgetattr_ptr(void) {
  static tcgetattr_fn fn;
  if (!fn) fn = (tcgetattr_fn)dlsym(RTLD_NEXT, "tcgetattr");
  return fn;
}

/* Returns 1 and the device number when fd is a pty slave. */
static int pty_slave(int fd, dev_t* rdev) {
  struct stat st;
  int saved = errno;
  int ok = fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) >= 136 &&
           major(st.st_rdev) <= 143;
  errno = saved;
  if (ok && rdev) *rdev = st.st_rdev;
  return ok;
}

/* Requested CSIZE/PARENB/PARODD/CMSPAR bits per pty device. Small fixed table: a test uses a
 * handful of ptys; the oldest entry is reused when it is full. */
#define MP_SHIM_SLOTS 64
#define MP_SHIM_BITS (CSIZE | PARENB | PARODD | CMSPAR)
static struct {
  dev_t dev;
  tcflag_t bits;
  int used;
} g_slots[MP_SHIM_SLOTS];
static unsigned g_next_slot;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void remember(dev_t dev, tcflag_t bits) {
  pthread_mutex_lock(&g_lock);
  int i, slot = -1;
  for (i = 0; i < MP_SHIM_SLOTS; i++)
    if (g_slots[i].used && g_slots[i].dev == dev) slot = i;
  if (slot < 0) slot = (int)(g_next_slot++ % MP_SHIM_SLOTS);
  g_slots[slot].dev = dev;
  g_slots[slot].bits = bits;
  g_slots[slot].used = 1;
  pthread_mutex_unlock(&g_lock);
}

static int recall(dev_t dev, tcflag_t* bits) {
  int i, found = 0;
  pthread_mutex_lock(&g_lock);
  for (i = 0; i < MP_SHIM_SLOTS; i++)
    if (g_slots[i].used && g_slots[i].dev == dev) {
      *bits = g_slots[i].bits;
      found = 1;
    }
  pthread_mutex_unlock(&g_lock);
  return found;
}

int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  ioctl_fn real = real_ioctl_ptr();
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  int rc = real(fd, request, arg);
  if (rc == -1 && (errno == ENOTTY || errno == EINVAL) &&
      (request == TIOCMGET || request == TIOCMBIS || request == TIOCMBIC || request == TIOCMSET) &&
      pty_slave(fd, NULL)) {
    if (request == TIOCMGET && arg) *(int*)arg = 0;
    errno = 0;
    return 0;
  }
  return rc;
}

int tcsetattr(int fd, int action, const struct termios* t) {
  tcsetattr_fn real = real_tcsetattr_ptr();
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  dev_t dev;
  if (!t || !pty_slave(fd, &dev)) return real(fd, action, t);
  struct termios sent = *t;
  sent.c_cflag &= ~(tcflag_t)MP_SHIM_BITS;
  sent.c_cflag |= CS8;
  int rc = real(fd, action, &sent);
  if (rc == 0) remember(dev, t->c_cflag & MP_SHIM_BITS);
  return rc;
}

int tcgetattr(int fd, struct termios* t) {
  tcgetattr_fn real = real_tcgetattr_ptr();
  if (!real) {
    errno = ENOSYS;
    return -1;
  }
  int rc = real(fd, t);
  dev_t dev;
  tcflag_t bits;
  if (rc == 0 && t && pty_slave(fd, &dev) && recall(dev, &bits)) {
    t->c_cflag &= ~(tcflag_t)MP_SHIM_BITS;
    t->c_cflag |= bits;
  }
  return rc;
}
