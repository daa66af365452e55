// meterpipe-upload worker (placeholder until its component lands: heartbeats only).
#include <unistd.h>

#include "bus/worker.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "upload");
  while (w.running()) {
    usleep(w.wait_ms() * 1000);
    w.tick();
  }
  return 0;
}
