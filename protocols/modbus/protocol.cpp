// Modbus RTU/TCP meters with a register map (protocols/modbus/modbus_maps.h) and SunSpec
// inverters and meters (protocols/modbus/sunspec.h), polled by protocols/modbus/modbus_poll.h.
// Meters on one serial line or one TCP gateway share one runner (one connection).
#include <map>
#include <memory>

#include "common/clock.h"
#include "common/log.h"
#include "protocols/modbus/modbus_maps.h"
#include "protocols/modbus/modbus_poll.h"
#include "protocols/modbus/sunspec.h"
#include "protocols/runner_support.h"
#include "protocols/specs.h"

namespace mp::protocols::modbus {

namespace {

using acquire::Parity;
namespace mb = mp::modbus;

mb::BusConfig bus_config(const config::Meter& first) {
  mb::BusConfig bc;
  if (first.source == "tcp") {
    bc.kind = mb::BusConfig::Kind::tcp;
    bc.host = first.host;
    bc.port = int(first.port);
  } else {
    const acquire::SerialSettings s = serial_settings(first);
    bc.kind = mb::BusConfig::Kind::rtu;
    bc.device = first.device;
    bc.baud = s.baud;
    bc.parity = s.parity == Parity::even ? 'E' : s.parity == Parity::odd ? 'O' : 'N';
    bc.data_bits = s.data_bits;
    bc.stop_bits = s.stop_bits;
  }
  bc.response_timeout_ms = int(first.timeout_ms);
  return bc;
}

mb::DeviceConfig device_config(const config::Meter& m) {
  mb::DeviceConfig dc;
  dc.name = m.name;
  dc.unit_id = int(m.unit_id);
  dc.type = m.protocol == "sunspec" ? "sunspec" : m.type;
  dc.interval_ms = int(m.interval_ms);
  dc.sunspec_part = m.sunspec_part == "inverter" ? mb::SunspecPart::inverter
                    : m.sunspec_part == "meter"  ? mb::SunspecPart::meter
                                                 : mb::SunspecPart::automatic;
  dc.sunspec_index = int(m.sunspec_index);
  return dc;
}

class BusRunner : public Runner {
 public:
  BusRunner(RunContext& ctx, std::vector<const config::Meter*> meters)
      : ctx_(ctx), meters_(std::move(meters)) {}

  void run(int slot) override {
    const mb::BusConfig bc = bus_config(*meters_.front());
    mb::Bus bus(bc);
    add_devices(bus, bc);
    bus.set_progress([&] { ctx_.progress(slot); });
    auto sink = [&](const mb::RawBlock& b) {
      ctx_.progress(slot);
      publish_block(b);
    };
    while (ctx_.running()) {
      const int64_t next = bus.poll_due(clock::mono_ns(), sink);
      ctx_.progress(slot);
      report_status(bus);
      sleep_until(ctx_, slot, std::min(next, clock::mono_ns() + 200000000));
    }
  }

 private:
  void add_devices(mb::Bus& bus, const mb::BusConfig& bc) {
    for (const auto* m : meters_) {
      const mb::DeviceConfig dc = device_config(*m);
      std::string err;
      if (!bus.add_device(dc, err)) {
        log::error("meter %s: %s", m->name.c_str(), err.c_str());
        continue;
      }
      log::info("meter %s: modbus %s unit %d (%s) every %lld ms", m->name.c_str(),
                bc.kind == mb::BusConfig::Kind::tcp
                    ? (bc.host + ":" + std::to_string(bc.port)).c_str()
                    : bc.device.c_str(),
                dc.unit_id, dc.type.c_str(), (long long)m->interval_ms);
    }
  }
  void publish_block(const mb::RawBlock& b) {
    auto raw = make_raw(b.device, "modbus",
                        std::string(reinterpret_cast<const char*>(b.bytes.data()), b.bytes.size()),
                        b.time_ns, clock::mono_ns(), b.last);
    raw.set_unit_id(uint32_t(b.unit_id));
    raw.set_function_code(b.fc);
    raw.set_start_address(b.start);
    raw.set_device_type(b.type);
    ctx_.publish(std::move(raw));
  }
  void report_status(const mb::Bus& bus) {
    for (const auto& st : bus.status()) {
      ctx_.set_counter("requests_" + st.name, st.requests);
      ctx_.set_counter("errors_" + st.name, st.errors);
      ctx_.gauge("request_rate_per_min_" + st.name, st.request_rate_per_min);
      ctx_.gauge("error_rate_per_min_" + st.name, st.error_rate_per_min);
      ctx_.info("state_" + st.name, st.state == mb::DeviceState::ok ? "ok" : "unavailable");
    }
  }

  RunContext& ctx_;
  std::vector<const config::Meter*> meters_;
};

// Modbus and SunSpec meters are one family: a gateway or line may carry both.
void make_runners(RunContext& ctx, const std::vector<const config::Meter*>& meters,
                  std::vector<std::unique_ptr<Runner>>& out, std::vector<std::string>& problems) {
  std::map<std::string, std::vector<const config::Meter*>> lines;
  for (const auto* m : meters) {
    if (m->source != "tcp" && m->source != "serial") {
      problems.push_back("meter " + m->name + ": Modbus needs source \"tcp\" or \"serial\"");
      continue;
    }
    lines[m->source == "tcp" ? m->host + ":" + std::to_string(m->port) : m->device].push_back(m);
  }
  for (auto& [line, ms] : lines) out.push_back(std::make_unique<BusRunner>(ctx, ms));
}

// Register blocks of one poll, collected until the block marked last_of_poll.
class Decoder : public FrameDecoder {
 public:
  explicit Decoder(const config::Meter& m) : invert_power_(m.invert_power) {}
  Status decode(const meterpipe::RawFrame& raw, Reading& out, std::string& error) override {
    const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data().data());
    const size_t n = raw.data().size();
    const bool is_sunspec = raw.device_type() == "sunspec";
    partial_.protocol = is_sunspec ? "sunspec" : "modbus";
    if (is_sunspec) {
      sunspec::DecodeOptions opt;
      opt.invert_meter_power = invert_power_;
      sunspec::decode_block_bytes(uint16_t(raw.start_address()), bytes, n, partial_.values, opt);
    } else {
      const mb::MeterMap* map = mb::find_map(raw.device_type());
      if (!map) {
        error = "no register map for device type \"" + raw.device_type() + "\"";
        partial_ = Reading{};
        return Status::error;
      }
      mb::decode_bytes(*map, uint8_t(raw.function_code()), uint16_t(raw.start_address()), bytes, n,
                       partial_.values);
    }
    if (!raw.last_of_poll()) return Status::pending;
    if (!is_sunspec) mb::complete(partial_.values);
    out = std::move(partial_);
    partial_ = Reading{};
    return Status::reading;
  }

 private:
  bool invert_power_;
  Reading partial_;
};

std::unique_ptr<FrameDecoder> make_decoder(const config::Meter& m, std::string&) {
  return std::make_unique<Decoder>(m);
}

}  // namespace

extern const Runtime runtime, sunspec_runtime;
const Runtime runtime{
    .make_runners = make_runners,
    .make_decoder = make_decoder,
    .add_cli = nullptr,
};
// The modbus family's runner (above) polls the SunSpec meters too.
const Runtime sunspec_runtime{
    .make_runners = nullptr,
    .make_decoder = make_decoder,
    .add_cli = nullptr,
};

}  // namespace mp::protocols::modbus
