// meterpipe-serve: live web page, REST and WebSocket API and Prometheus /metrics
// (serve/worker_serve.h).
#include "bus/worker.h"
#include "serve/worker_serve.h"

int main(int argc, char** argv) {
  mp::serve::tune_malloc();
  mp::Worker w(argc, argv, "serve");
  mp::serve::ServeWorker s(w);
  return s.run();
}
