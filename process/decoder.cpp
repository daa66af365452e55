#include "process/decoder.h"

#include <cerrno>
#include <ctime>
#include <fstream>
#include <sstream>

#include "process/dlms.h"
#include "process/dsmr.h"
#include "process/mbus.h"
#include "process/modbus_maps.h"
#include "process/reading_proto.h"
#include "process/sunspec.h"

namespace mp::process {

namespace {

// M-Bus times are the meter's wall clock: converted with the process's time zone (TZ, set
// from general.timezone by the worker's main). False when the zone cannot convert it.
bool local_to_utc(int64_t local_seconds, int64_t& utc_seconds) {
  const time_t t = static_cast<time_t>(local_seconds);
  struct tm tm {};
  if (!gmtime_r(&t, &tm)) return false;
  tm.tm_isdst = -1;
  errno = 0;
  const time_t u = mktime(&tm);
  if (u == static_cast<time_t>(-1) && errno != 0) return false;
  utc_seconds = static_cast<int64_t>(u);
  return true;
}

}  // namespace

namespace {
bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}
}  // namespace

Decoders::Decoders(const config::Config& cfg) {
  for (const auto& m : cfg.meters) {
    MeterState st;
    st.cfg = &m;
    if (!m.key_file.empty()) {
      std::string text, err;
      dlms::Keys keys;
      if (!read_file(m.key_file, text)) {
        setup_errors_.push_back("meter " + m.name + ": cannot read key_file " + m.key_file);
      } else if (!dlms::parse_key_file(text, keys, err)) {
        setup_errors_.push_back("meter " + m.name + ": key_file " + m.key_file + ": " + err);
      } else {
        st.key.assign(reinterpret_cast<const char*>(keys.encryption.data()), 16);
        st.auth_key.assign(reinterpret_cast<const char*>(keys.authentication.data()), 16);
      }
    }
    meters_[m.name] = std::move(st);
  }
}

Status Decoders::decode(const meterpipe::RawFrame& raw, meterpipe::Reading& reading,
                        std::string& error) {
  auto it = meters_.find(raw.source());
  if (it == meters_.end()) {
    error = "frame from unknown meter \"" + raw.source() + "\" (not in this config)";
    return Status::error;
  }
  MeterState& st = it->second;
  Reading r;
  Status s;
  if (raw.protocol() == "dsmr" || raw.protocol() == "dsmr-dlms")
    s = decode_dsmr(st, raw, r, error);
  else
    s = decode_multi(st, raw, r, error);
  if (s != Status::reading) return s;
  r.meter = raw.source();
  r.receive_time_ns = raw.receive_time_ns();
  to_proto(r, &reading);
  reading.set_receive_mono_ns(raw.receive_mono_ns());
  reading.set_clock_synced(raw.clock_synced());
  return Status::reading;
}

Status Decoders::decode_dsmr(MeterState& st, const meterpipe::RawFrame& raw, Reading& out,
                             std::string& error) {
  std::string plaintext;
  std::string_view telegram = raw.data();
  if (raw.protocol() == "dsmr-dlms") {
    if (st.key.empty()) {
      error = "encrypted telegram but no usable key_file for this meter";
      return Status::error;
    }
    dlms::Keys keys;
    std::copy(st.key.begin(), st.key.end(), keys.encryption.begin());
    std::copy(st.auth_key.begin(), st.auth_key.end(), keys.authentication.begin());
    if (!dlms::decrypt(raw.data(), keys, plaintext, error)) return Status::error;
    telegram = plaintext;
  }
  dsmr::Result res;
  if (!dsmr::decode(telegram, res)) {
    error = res.errors.empty() ? "telegram could not be decoded" : res.errors.front();
    return Status::error;
  }
  out = std::move(res.reading);
  return Status::reading;
}

Status Decoders::decode_multi(MeterState& st, const meterpipe::RawFrame& raw, Reading& out,
                              std::string& error) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(raw.data().data());
  const size_t n = raw.data().size();
  Status status = Status::pending;
  if (raw.protocol() == "modbus") {
    st.partial.protocol = "modbus";
    if (raw.device_type() == "sunspec") {
      st.partial.protocol = "sunspec";
      sunspec::DecodeOptions opt;
      opt.invert_meter_power = st.cfg->invert_power;
      sunspec::decode_block_bytes(uint16_t(raw.start_address()), bytes, n, st.partial.values, opt);
    } else {
      const modbus::MeterMap* map = modbus::find_map(raw.device_type());
      if (!map) {
        error = "no register map for device type \"" + raw.device_type() + "\"";
        status = Status::error;
      } else {
        modbus::decode_bytes(*map, uint8_t(raw.function_code()), uint16_t(raw.start_address()),
                             bytes, n, st.partial.values);
      }
    }
    if (status != Status::error && raw.last_of_poll()) {
      if (raw.device_type() != "sunspec") modbus::complete(st.partial.values);
      status = Status::reading;
    }
  } else if (raw.protocol() == "mbus") {
    auto res = mbus::decode(std::span<const uint8_t>(bytes, n));
    if (!res.error.empty()) {
      error = "M-Bus frame: " + res.error;
      status = Status::error;
    } else {
      Reading part;
      std::string why;
      mbus::to_reading(res.frame, part, &why, local_to_utc);
      st.partial.protocol = "mbus";
      if (!part.device_id.empty()) st.partial.device_id = part.device_id;
      if (part.meter_time_ns) st.partial.meter_time_ns = part.meter_time_ns;
      for (auto& v : part.values) st.partial.values.push_back(std::move(v));
      if (raw.last_of_poll()) status = Status::reading;
    }
  } else {
    error = "unknown protocol \"" + raw.protocol() + "\"";
    status = Status::error;
  }
  if (status == Status::reading) {
    out = std::move(st.partial);
    st.partial = Reading{};
  } else if (status == Status::error) {
    st.partial = Reading{};
  }
  return status;
}

}  // namespace mp::process
