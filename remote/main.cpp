// meterpipe-remote: the bus over TCP for remote taps, CurveZMQ only ([remote] in the config;
// docs/ARCHITECTURE.md, "Processes"). Forwarding and authentication are bus::RemoteForwarder; this
// file wires config + forwarder + health. It publishes nothing but its own health.
#include <algorithm>
#include <memory>
#include <string>

#include "bus/remote.h"
#include "bus/worker.h"
#include "common/curve_keys.h"
#include "common/fs.h"
#include "common/log.h"

int main(int argc, char** argv) {
  mp::Worker w(argc, argv, "remote");
  const auto& rc = w.cfg().remote;
  if (!rc.enabled) {
    mp::log::error("remote taps are off ([remote] enabled = false)");
    return 2;
  }
  mp::bus::RemoteForwarder::Options opt;
  opt.run_dir = w.cfg().general.run_dir;
  opt.publishers = rc.publishers;
  opt.listen = rc.listen;
  opt.authorized_keys_file = rc.authorized_keys_file;
  {
    std::string text, err;
    mp::keys::Problem problem;
    if (!mp::fs::read_file(rc.secret_key_file, text, err)) {
      mp::log::error("secret_key_file: %s", err.c_str());
      return 1;
    }
    const bool ok = mp::keys::parse_key_text(text, opt.secret_key, problem);
    std::fill(text.begin(), text.end(), '\0');
    if (!ok) {
      mp::log::error("secret_key_file %s: %s", rc.secret_key_file.c_str(), problem.str().c_str());
      return 1;
    }
  }
  std::unique_ptr<mp::bus::RemoteForwarder> fwd;
  try {
    fwd = std::make_unique<mp::bus::RemoteForwarder>(std::move(opt));  // wipes the secret
  } catch (const std::exception& e) {
    mp::log::error("%s", e.what());
    return 1;
  }
  std::string pubs;
  for (const auto& p : rc.publishers) pubs += (pubs.empty() ? "" : ", ") + p;
  const auto st0 = fwd->stats();
  mp::log::info("remote taps on %s (CurveZMQ; %llu authorized key%s in %s); forwarding %s",
                fwd->endpoint().c_str(), (unsigned long long)st0.keys, st0.keys == 1 ? "" : "s",
                rc.authorized_keys_file.c_str(), pubs.c_str());
  w.info("endpoint", fwd->endpoint());
  while (w.running()) {
    fwd->poll(w.wait_ms());
    const auto st = fwd->stats();
    w.set_counter("remote_clients_accepted", st.accepted);
    w.set_counter("remote_clients_rejected", st.rejected);
    w.set_counter("remote_forwarded", st.forwarded);
    w.set_counter("remote_key_reloads", st.key_reloads);
    w.gauge("remote_subscriptions", double(st.subscriptions));
    w.gauge("remote_authorized_keys", double(st.keys));
    w.tick();
  }
  return 0;
}
