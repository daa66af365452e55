// meterpipe-actuate: reading/* in, relay decisions out (relay/<name> events + outputs).
// The rules engine is pure (actuate/rules.*); this file wires config, bus, outputs, the
// control socket (manual overrides, status) and the persisted state.
#include "actuate/worker_actuator.h"
#include "bus/worker.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "actuate");
  mp::actuate::Actuator a(w);
  return a.run();
}
