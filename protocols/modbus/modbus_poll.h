// Modbus polling: pure read planning (coalescing a map's registers into few requests), and
// a bus object that executes the plans over libmodbus (RTU or TCP), produces raw register
// blocks, keeps per-device counters, and scans a bus for known meters.
//
// Threading: a Bus is used from one thread. Run one Bus per serial line / TCP endpoint.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "protocols/modbus/modbus_maps.h"
#include "protocols/modbus/sunspec.h"

namespace mp::modbus {

// ---------------------------------------------------------------------------------------
// Planning (pure)

// One range of registers that must be read as a whole (a map entry, or a SunSpec model).
struct Span {
  uint8_t fc = 3;
  uint16_t start = 0;
  uint16_t count = 0;
  uint32_t end() const { return uint32_t{start} + count; }
  bool operator==(const Span&) const = default;
};

struct ReadRequest {
  uint8_t fc = 3;
  uint16_t start = 0;
  uint16_t count = 0;
  uint32_t end() const { return uint32_t{start} + count; }
  bool operator==(const ReadRequest&) const = default;
};

struct PlanOptions {
  uint16_t max_gap = 10;     // merge two spans when at most this many unread registers lie between
  uint16_t max_count = 125;  // registers per request (Modbus limit for FC 3/4)
};

// The spans of a map (one per register definition), sorted by (fc, start), duplicates removed.
std::vector<Span> map_spans(const MeterMap& map);
// Coalesces spans into as few requests as possible: sorted by (fc, start); a span joins the
// current request when it has the same fc, the gap is <= max_gap and the merged request
// stays <= max_count. Spans longer than max_count get a request of their own (clamped).
std::vector<ReadRequest> plan_reads(std::vector<Span> spans, const PlanOptions& opt = {});
std::vector<ReadRequest> plan_reads(const MeterMap& map, const PlanOptions& opt = {});

// For a request the device refused with exception 02 (illegal data address): splits it into
// two requests covering the spans inside it, at the largest hole between consecutive spans
// (or in the middle when there is no hole). False when the request covers at most one span:
// then that span itself is unsupported by the device.
bool split_request(const ReadRequest& req, const std::vector<Span>& spans, ReadRequest& first,
                   ReadRequest& second);

// ---------------------------------------------------------------------------------------
// Bus and devices (libmodbus)

struct BusConfig {
  enum class Kind { tcp, rtu };
  Kind kind = Kind::tcp;
  // TCP
  std::string host = "127.0.0.1";
  int port = 502;
  // RTU
  std::string device;  // "/dev/ttyUSB0"
  int baud = 9600;
  char parity = 'N';  // 'N', 'E', 'O'
  int data_bits = 8;
  int stop_bits = 1;
  // Both
  int response_timeout_ms = 1000;
  int retries = 1;  // extra attempts for garbled answers (CRC, bad data); never for timeouts
  int unavailable_after = 3;   // consecutive failed polls before a device is "unavailable"
  int backoff_min_ms = 1000;   // retry interval of an unavailable device, doubling ...
  int backoff_max_ms = 60000;  // ... up to this
  int reconnect_min_ms = 500;  // bus connect failures: backoff doubling up to reconnect_max_ms
  int reconnect_max_ms = 30000;
};

enum class SunspecPart { automatic, inverter, meter };

struct DeviceConfig {
  std::string name;  // "grid"; used as raw/<name>
  int unit_id = 1;   // 0..247 (TCP gateways also use 255)
  std::string type;  // a map type (find_map) or "sunspec"
  int interval_ms = 1000;
  PlanOptions plan{};
  // SunSpec only: which model to poll. automatic = first inverter model, else first meter.
  SunspecPart sunspec_part = SunspecPart::automatic;
  int sunspec_index = 0;  // the Nth model of that part (0 = first)
};

// One response: register bytes big-endian as on the wire.
struct RawBlock {
  std::string device;
  std::string type;  // device type ("sdm630", "sunspec", ...), to pick the decoder
  int unit_id = 0;
  uint8_t fc = 3;
  uint16_t start = 0;
  std::vector<uint8_t> bytes;  // 2 bytes per register
  int64_t time_ns = 0;         // wall clock when the response arrived
  uint64_t poll_seq = 0;       // +1 per poll of this device
  bool last = false;           // last block of this poll
  bool poll_complete = false;  // (on the last block) every request of the poll succeeded
};

enum class DeviceState { ok, unavailable };

struct DeviceStatus {
  std::string name;
  std::string type;
  int unit_id = 0;
  DeviceState state = DeviceState::ok;
  uint64_t requests = 0;
  uint64_t errors = 0;
  double request_rate_per_min = 0;  // since the device was added
  double error_rate_per_min = 0;
  uint64_t polls = 0;
  uint64_t failed_polls = 0;
  int consecutive_failures = 0;
  std::string last_error;
  std::vector<ReadRequest> plan;  // current plan (after any splits)
};

struct ScanResult {
  int unit_id = 0;
  std::string type;  // first map (all_maps() order) whose probe answered plausibly
  double voltage_l1_v = 0;
};

using BlockSink = std::function<void(const RawBlock&)>;

class Bus {
 public:
  explicit Bus(BusConfig config);
  ~Bus();
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  const BusConfig& config() const;

  // False (with *error) for an unknown type, a bad unit id or interval, a duplicate name.
  bool add_device(const DeviceConfig& device, std::string& error);
  size_t device_count() const;

  // Polls every device due at `now_mono_ns` (mp::clock::mono_ns()); each block goes to
  // `sink` (blocks of one poll are delivered together, the final one with last = true).
  // Returns the monotonic time at which the next device is due.
  int64_t poll_due(int64_t now_mono_ns, const BlockSink& sink);
  // Polls one device now, regardless of its schedule. True when every request succeeded.
  bool poll_device(size_t index, const BlockSink& sink);

  std::vector<DeviceStatus> status() const;

  // Tries each unit id: identifies the meter type by reading the L1 voltage register of
  // each map (plausible 90..270 V). A silent id costs one timeout_ms; ids that answer with
  // exceptions or implausible values are probed with the next map.
  std::vector<ScanResult> scan(const std::vector<int>& ids, int timeout_ms = 1000);

  bool connected() const;
  void disconnect();
  // Called before every request (a poll of several silent devices can take several
  // timeouts; the acquire worker reports progress to its watchdog from here).
  void set_progress(std::function<void()> progress);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mp::modbus
