// Everything the serve worker knows, built from bus messages (pure: no sockets, no clock;
// every call that needs the time gets it as an argument).
//
// Per meter: the latest reading, 1 h of 1-second and 24 h of 1-minute history of the
// charted series, a rolling 60-second average of every numeric value (like mbmd's
// /api/minuteavg), and today's import/export/gas (counter now minus counter at local
// midnight, or at the first reading seen when serve started later that day).
// Per relay: state and the reason of its last switch. Per worker: its last heartbeat and
// the counter rates derived from successive heartbeats.
//
// Memory is bounded: the rings are fixed, meters, relays, workers and value names are
// capped (kMax* below). Not thread-safe: the worker guards it with one mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "meterpipe.pb.h"
#include "serve/history.h"

namespace mp::serve {

// Series kept in history for every meter (the chart shows the first). Each costs 120 KiB
// per meter; the RSS budget (10 MB with one meter) is why only net power is kept.
inline const std::vector<std::string>& history_series() {
  static const std::vector<std::string> s{"power_net_w"};
  return s;
}

constexpr size_t kMaxMeters = 32;
constexpr size_t kMaxValuesPerMeter = 200;  // rolling averages kept per meter
constexpr size_t kMaxRelays = 64;
constexpr size_t kMaxWorkers = 32;

// "Today" of one counter.
struct DayCounter {
  int64_t day = INT64_MIN;  // local day number the baseline belongs to
  double base = 0;          // counter at the start of the day (or when first seen)
  double last = 0;
  bool have = false;
  bool from_midnight = false;  // base is the last value before local midnight
  int64_t since_ns = 0;        // time of the baseline (0 = unknown)

  // `day` is the local day number of `t_ns` (the caller knows the time zone).
  void update(int64_t day, double value, int64_t t_ns);
  double today() const { return have ? last - base : 0; }
};

// Net power of a reading: power_net_w, or power_import_w - power_export_w.
std::optional<double> net_power(const meterpipe::Reading& r);
// Import/export energy registers: energy_import_kwh, or the sum of its tariff registers.
std::optional<double> energy_total(const meterpipe::Reading& r, const std::string& dir);

struct MeterState {
  std::string name;
  bool configured = false;
  bool have = false;
  meterpipe::Reading last;
  std::string publisher;
  uint64_t seq = 0;
  int64_t send_time_ns = 0;
  uint64_t readings = 0;               // seen by serve since it started
  uint64_t bus_lost = 0;               // gaps in seq seen by serve (sum over publishers)
  int64_t first_ns = 0;                // time of the first reading seen
  BucketRing reading_rate{120, 1000};  // readings per second over the last minute
  std::map<std::string, std::unique_ptr<BucketRing>> avg;  // 60 s of 1-s buckets per value
  std::map<std::string, std::string> units;
  std::map<std::string, std::unique_ptr<SeriesHistory>> history;
  DayCounter import_kwh, export_kwh, gas_m3;
};

struct RelayState {
  std::string name;
  std::string meter;
  bool configured = false;
  bool known = false;  // state known (from an event or actuate's heartbeat)
  bool on = false;
  bool have_event = false;
  meterpipe::RelayEvent last_event;
  int64_t event_time_ns = 0;
  uint64_t events = 0;
  uint64_t switches = 0;
  uint64_t failures = 0;
};

struct WorkerState {
  std::string name;
  bool have = false;
  meterpipe::Health health;
  int64_t last_mono_ns = 0;
  int64_t last_wall_ns = 0;
  // (mono ns, counters) about every 10 s over the last ~minute, for rates
  std::deque<std::pair<int64_t, std::map<std::string, uint64_t>>> snapshots;
};

struct ServeInfo {  // the serve worker's own figures, shown in /api/status
  double uptime_s = 0;
  int pid = 0;
  std::string listen;
  size_t ws_clients = 0;
  uint64_t ws_dropped = 0;
  uint64_t ws_messages = 0;
  uint64_t http_requests = 0;
  uint64_t bus_received = 0;
  uint64_t bus_lost = 0;
};

class State {
 public:
  // Configured meters, relays (name -> meter) and workers; others seen on the bus are added.
  State(const std::vector<std::string>& meters,
        const std::vector<std::pair<std::string, std::string>>& relays,
        const std::vector<std::string>& workers);

  // `local_day` = local day number of the reading's time (days since 1970-01-01 in the
  // configured time zone). Returns false when the reading was refused (too many meters).
  bool on_reading(const meterpipe::Envelope& env, int64_t local_day);
  void on_relay(const meterpipe::Envelope& env);
  void on_health(const meterpipe::Envelope& env, int64_t now_mono_ns, int64_t now_wall_ns);
  // Messages of reading/<meter> the serve subscriber knows it lost (bus seq gaps).
  void set_lost(const std::string& meter, uint64_t n);

  bool has_meter(const std::string& m) const { return meters_.count(m) != 0; }
  const MeterState* meter(const std::string& m) const;
  const std::map<std::string, MeterState>& meters() const { return meters_; }
  const std::map<std::string, RelayState>& relays() const { return relays_; }
  const std::map<std::string, WorkerState>& workers() const { return workers_; }
  std::vector<std::string> meter_names() const;
  std::vector<std::string> relay_names() const;

  // JSON documents of the REST API (now = wall-clock ns; mono for heartbeat ages).
  std::string last_json(const MeterState& m) const;
  std::string all_last_json() const;
  std::string minuteavg_json(const MeterState& m, int64_t now_ns) const;
  // `resolution_s` is 1 (last hour only) or 60; `minutes` within the ring.
  std::string history_json(const MeterState& m, const std::string& series, int minutes,
                           int resolution_s, int64_t now_ns) const;
  std::string relays_json() const;
  std::string status_json(const ServeInfo& self, int64_t now_wall_ns, int64_t now_mono_ns) const;
  // Prometheus text exposition of everything.
  std::string metrics_text(const ServeInfo& self, int64_t now_wall_ns, int64_t now_mono_ns) const;

  // WebSocket messages: one per reading or relay event, as they arrive.
  std::string reading_event_json(const meterpipe::Envelope& env) const;
  static std::string relay_event_json(const meterpipe::Envelope& env);

  // A heartbeat older than this counts as down: general.watchdog_s, after which the
  // supervisor kills the worker too (a quiet worker heartbeats every watchdog_s / 2).
  void set_health_stale_s(double s) { health_stale_s_ = s; }

 private:
  MeterState* meter_for(const std::string& name);
  void append_today(std::string& s, const MeterState& m) const;
  void append_reading(std::string& s, const MeterState& m) const;

  std::map<std::string, MeterState> meters_;
  std::map<std::string, RelayState> relays_;
  std::map<std::string, WorkerState> workers_;
  double health_stale_s_ = 5;
};

}  // namespace mp::serve
