// meterpipe-actuate: raw/<meter> frames of the relays' meters in (decoded here with the
// same decoders as process: docs/ARCHITECTURE.md, "The switching path"), relay decisions
// out (relay/<name> events and the outputs). The wiring is actuate/worker_actuator.*; the
// rules engine is pure (actuate/rules.*).
#include "actuate/worker_actuator.h"
#include "bus/worker.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "actuate");
  mp::actuate::Actuator a(w);
  return a.run();
}
