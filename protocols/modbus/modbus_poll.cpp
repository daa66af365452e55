#include "protocols/modbus/modbus_poll.h"

#include <modbus.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/clock.h"
#include "common/log.h"

namespace mp::modbus {

// ---------------------------------------------------------------------------------------
// Planning

std::vector<Span> map_spans(const MeterMap& map) {
  std::vector<Span> spans;
  spans.reserve(map.regs.size());
  for (const auto& r : map.regs) spans.push_back({r.fc, r.address, register_count(r.type)});
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.fc != b.fc ? a.fc < b.fc : a.start != b.start ? a.start < b.start : a.count < b.count;
  });
  spans.erase(std::unique(spans.begin(), spans.end()), spans.end());
  return spans;
}

std::vector<ReadRequest> plan_reads(std::vector<Span> spans, const PlanOptions& opt) {
  std::vector<ReadRequest> out;
  const uint32_t max_count = std::max<uint32_t>(1, opt.max_count);
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.fc != b.fc ? a.fc < b.fc : a.start < b.start;
  });
  bool open = false;
  ReadRequest cur;
  for (const auto& s : spans) {
    if (s.count == 0) continue;
    const uint32_t s_end = std::min<uint32_t>(s.end(), 0x10000);
    if (open && s.fc == cur.fc) {
      const uint32_t cur_end = cur.end();
      if (s_end <= cur_end) continue;  // already covered
      const uint32_t gap = s.start > cur_end ? s.start - cur_end : 0;
      if (gap <= opt.max_gap && s_end - cur.start <= max_count) {
        cur.count = static_cast<uint16_t>(s_end - cur.start);
        continue;
      }
    }
    if (open) out.push_back(cur);
    cur = {s.fc, s.start, static_cast<uint16_t>(std::min<uint32_t>(s_end - s.start, max_count))};
    open = true;
  }
  if (open) out.push_back(cur);
  return out;
}

std::vector<ReadRequest> plan_reads(const MeterMap& map, const PlanOptions& opt) {
  return plan_reads(map_spans(map), opt);
}

bool split_request(const ReadRequest& req, const std::vector<Span>& spans, ReadRequest& first,
                   ReadRequest& second) {
  std::vector<Span> in;
  for (const auto& s : spans)
    if (s.fc == req.fc && s.start >= req.start && s.end() <= req.end() && s.count > 0)
      in.push_back(s);
  std::sort(in.begin(), in.end(), [](const Span& a, const Span& b) { return a.start < b.start; });
  if (in.size() < 2) return false;
  // Split after index k: at the largest hole, or in the middle when all are adjacent.
  size_t k = (in.size() - 1) / 2;
  uint32_t best_gap = 0;
  uint32_t reach = in[0].end();
  for (size_t i = 0; i + 1 < in.size(); ++i) {
    reach = std::max(reach, in[i].end());
    const uint32_t gap = in[i + 1].start > reach ? in[i + 1].start - reach : 0;
    if (gap > best_gap) best_gap = gap, k = i;
  }
  uint32_t first_end = 0;
  for (size_t i = 0; i <= k; ++i) first_end = std::max(first_end, in[i].end());
  uint32_t second_end = 0;
  for (size_t i = k + 1; i < in.size(); ++i) second_end = std::max(second_end, in[i].end());
  first = {req.fc, in[0].start, static_cast<uint16_t>(first_end - in[0].start)};
  second = {req.fc, in[k + 1].start, static_cast<uint16_t>(second_end - in[k + 1].start)};
  return true;
}

// ---------------------------------------------------------------------------------------
// Bus

namespace {

constexpr int64_t kMsNs = 1'000'000;

enum class ReadResult { ok, illegal_address, exception, timeout, garbled, io_error };

const char* result_text(ReadResult r) {
  switch (r) {
    case ReadResult::ok:
      return "ok";
    case ReadResult::illegal_address:
      return "exception 02 (illegal data address)";
    case ReadResult::exception:
      return "exception response";
    case ReadResult::timeout:
      return "timeout";
    case ReadResult::garbled:
      return "garbled response";
    case ReadResult::io_error:
      return "i/o error";
  }
  return "?";
}

ReadResult classify(int err) {
  if (err == EMBXILADD) return ReadResult::illegal_address;
  if (err > MODBUS_ENOBASE && err <= EMBXGTAR) return ReadResult::exception;
  if (err == ETIMEDOUT) return ReadResult::timeout;
  if (err >= EMBBADCRC && err <= EMBBADSLAVE) return ReadResult::garbled;
  return ReadResult::io_error;
}

struct Device {
  DeviceConfig cfg;
  const MeterMap* map = nullptr;  // null for sunspec
  bool sunspec = false;
  std::vector<Span> spans;  // what must be read (map registers or SunSpec models)
  std::vector<ReadRequest> plan;
  bool discovered = false;        // sunspec: model chain known
  std::vector<ReadRequest> once;  // sunspec: common model, read on the poll after discovery
  int64_t next_due = 0;           // mono ns
  int64_t added_at = 0;           // mono ns
  DeviceState state = DeviceState::ok;
  int consecutive_failures = 0;
  int backoff_ms = 0;
  uint64_t requests = 0, errors = 0, polls = 0, failed_polls = 0, poll_seq = 0;
  std::string last_error;
};

}  // namespace

struct Bus::Impl {
  BusConfig cfg;
  modbus_t* ctx = nullptr;
  bool is_connected = false;
  int64_t reconnect_at = 0;  // mono ns
  int reconnect_backoff_ms = 0;
  int current_timeout_ms = -1;
  std::vector<Device> devices;
  std::function<void()> progress;

  explicit Impl(BusConfig c) : cfg(std::move(c)) {}
  ~Impl() { drop_context(); }

  void drop_context() {
    if (ctx) {
      modbus_close(ctx);
      modbus_free(ctx);
      ctx = nullptr;
    }
    is_connected = false;
  }

  void set_timeout(int ms) {
    if (!ctx || ms == current_timeout_ms) return;
    ms = std::max(ms, 1);
    modbus_set_response_timeout(ctx, static_cast<uint32_t>(ms / 1000),
                                static_cast<uint32_t>((ms % 1000) * 1000));
    modbus_set_byte_timeout(ctx, static_cast<uint32_t>(ms / 1000),
                            static_cast<uint32_t>((ms % 1000) * 1000));
    current_timeout_ms = ms;
  }

  // Connects when needed (with backoff after failures). False when not connected.
  bool ensure_connected(std::string& why) {
    if (is_connected) return true;
    const int64_t now = mp::clock::mono_ns();
    if (now < reconnect_at) {
      why = "bus not connected (waiting to reconnect)";
      return false;
    }
    if (!ctx) {
      if (cfg.kind == BusConfig::Kind::tcp) {
        const std::string port = std::to_string(cfg.port);
        ctx = modbus_new_tcp_pi(cfg.host.c_str(), port.c_str());
      } else {
        ctx =
            modbus_new_rtu(cfg.device.c_str(), cfg.baud, cfg.parity, cfg.data_bits, cfg.stop_bits);
      }
      if (!ctx) {
        why = std::string("cannot create modbus context: ") + modbus_strerror(errno);
        schedule_reconnect(now);
        return false;
      }
      current_timeout_ms = -1;
      set_timeout(cfg.response_timeout_ms);
    }
    if (modbus_connect(ctx) != 0) {
      why = std::string("connect failed: ") + modbus_strerror(errno);
      drop_context();
      schedule_reconnect(now);
      return false;
    }
    is_connected = true;
    reconnect_backoff_ms = 0;
    return true;
  }

  void schedule_reconnect(int64_t now) {
    reconnect_backoff_ms = reconnect_backoff_ms == 0
                               ? cfg.reconnect_min_ms
                               : std::min(cfg.reconnect_max_ms, reconnect_backoff_ms * 2);
    reconnect_at = now + int64_t{reconnect_backoff_ms} * kMsNs;
  }

  // After a timeout or garbage, a late answer may still arrive: TCP reconnects (the stale
  // answer dies with the old connection), RTU flushes the input.
  void recover_after_error(ReadResult r) {
    if (!ctx) return;
    if (cfg.kind == BusConfig::Kind::tcp) {
      if (r == ReadResult::timeout || r == ReadResult::garbled || r == ReadResult::io_error) {
        modbus_close(ctx);
        is_connected = false;
      }
    } else {
      if (r == ReadResult::garbled || r == ReadResult::timeout) modbus_flush(ctx);
      if (r == ReadResult::io_error) drop_context();
    }
  }

  // One read with retries for garbled answers. `dev` may be null (scan).
  ReadResult read(Device* dev, int unit, uint8_t fc, uint16_t start, uint16_t count, uint16_t* out,
                  int retries, std::string& why) {
    for (int attempt = 0;; ++attempt) {
      if (!ensure_connected(why)) {
        if (dev) ++dev->errors;
        return ReadResult::io_error;
      }
      modbus_set_slave(ctx, unit);
      if (progress) progress();
      if (dev) ++dev->requests;
      const int n = fc == 4 ? modbus_read_input_registers(ctx, start, count, out)
                            : modbus_read_registers(ctx, start, count, out);
      if (n == count) return ReadResult::ok;
      const int err = n < 0 ? errno : EMBBADDATA;
      const ReadResult r = classify(err);
      if (dev) ++dev->errors;
      why = std::string(result_text(r)) + " (" + modbus_strerror(err) + ")";
      recover_after_error(r);
      // Garbled answers are retried; so is a TCP connection the peer dropped (the retry
      // reconnects). A timeout is not: a silent device must cost one timeout only.
      const bool retry = r == ReadResult::garbled ||
                         (r == ReadResult::io_error && cfg.kind == BusConfig::Kind::tcp);
      if (retry && attempt < retries) continue;
      return r;
    }
  }

  // SunSpec: marker search and chain walk; builds the plan. False on failure.
  bool discover(Device& d, std::string& why) {
    auto rd = [&](uint16_t a, uint16_t c, uint16_t* o) {
      std::string w;
      const ReadResult r = read(&d, d.cfg.unit_id, 3, a, c, o, cfg.retries, w);
      if (r != ReadResult::ok && r != ReadResult::illegal_address) why = w;
      return r == ReadResult::ok;
    };
    uint16_t base = 0;
    if (!sunspec::find_base(rd, base)) {
      if (why.empty()) why = "no SunS marker at 40000, 0 or 50000";
      return false;
    }
    std::vector<sunspec::ModelRef> models;
    std::string err;
    if (!sunspec::walk_chain(rd, base, models, err)) {
      why = "SunSpec model chain: " + err;
      return false;
    }
    const sunspec::ModelRef* chosen = nullptr;
    const sunspec::ModelRef* common = nullptr;
    int inv_seen = 0, met_seen = 0;
    const sunspec::ModelRef* first_inv = nullptr;
    const sunspec::ModelRef* first_met = nullptr;
    const sunspec::ModelRef* nth_inv = nullptr;
    const sunspec::ModelRef* nth_met = nullptr;
    for (const auto& m : models) {
      if (sunspec::is_common_model(m.id) && !common) common = &m;
      if (sunspec::is_inverter_model(m.id)) {
        if (!first_inv) first_inv = &m;
        if (inv_seen++ == d.cfg.sunspec_index) nth_inv = &m;
      }
      if (sunspec::is_meter_model(m.id)) {
        if (!first_met) first_met = &m;
        if (met_seen++ == d.cfg.sunspec_index) nth_met = &m;
      }
    }
    switch (d.cfg.sunspec_part) {
      case SunspecPart::automatic:
        chosen = first_inv ? first_inv : first_met;
        break;
      case SunspecPart::inverter:
        chosen = nth_inv;
        break;
      case SunspecPart::meter:
        chosen = nth_met;
        break;
    }
    if (!chosen) {
      why = "no matching SunSpec inverter/meter model";
      return false;
    }
    auto model_req = [](const sunspec::ModelRef& m) {
      const uint32_t n = std::min<uint32_t>(2u + m.length, 125u);
      return ReadRequest{3, m.address, static_cast<uint16_t>(n)};
    };
    d.plan = {model_req(*chosen)};
    d.spans = {Span{3, chosen->address, d.plan[0].count}};
    d.once.clear();
    if (common) d.once.push_back(model_req(*common));
    d.discovered = true;
    mp::log::info("modbus %s: SunSpec base %u, %zu models, polling model %u at %u",
                  d.cfg.name.c_str(), base, models.size(), chosen->id, chosen->address);
    return true;
  }

  // Executes one request; on exception 02 splits it (remembering the split in the plan) and
  // executes the halves. Appends blocks. Returns false on a failure that ends the poll.
  bool execute(Device& d, size_t idx, std::vector<ReadRequest>& plan, std::vector<RawBlock>& blocks,
               int retries, std::string& why, int depth = 0) {
    const ReadRequest req = plan[idx];
    std::vector<uint16_t> regs(req.count);
    const ReadResult r =
        read(&d, d.cfg.unit_id, req.fc, req.start, req.count, regs.data(), retries, why);
    if (r == ReadResult::ok) {
      RawBlock b;
      b.device = d.cfg.name;
      b.type = d.sunspec ? "sunspec" : std::string(d.map->type);
      b.unit_id = d.cfg.unit_id;
      b.fc = req.fc;
      b.start = req.start;
      b.time_ns = mp::clock::wall_ns();
      b.bytes.resize(size_t{req.count} * 2);
      for (size_t i = 0; i < req.count; ++i) {
        b.bytes[2 * i] = static_cast<uint8_t>(regs[i] >> 8);
        b.bytes[2 * i + 1] = static_cast<uint8_t>(regs[i] & 0xFF);
      }
      blocks.push_back(std::move(b));
      return true;
    }
    if (r == ReadResult::illegal_address && depth < 32) {
      ReadRequest a, b;
      if (split_request(req, d.spans, a, b)) {
        mp::log::info(
            "modbus %s: %s at %u+%u refused (exception 02); splitting into %u+%u and %u+%u",
            d.cfg.name.c_str(), req.fc == 4 ? "ir" : "hr", req.start, req.count, a.start, a.count,
            b.start, b.count);
        plan[idx] = a;
        plan.insert(plan.begin() + static_cast<std::ptrdiff_t>(idx) + 1, b);
        if (!execute(d, idx, plan, blocks, retries, why, depth + 1)) return false;
        // idx may have grown by further splits of the first half: find b again.
        size_t j = idx;
        while (j < plan.size() && !(plan[j] == b)) ++j;
        if (j == plan.size()) return true;
        return execute(d, j, plan, blocks, retries, why, depth + 1);
      }
      // A single register the device does not have: drop it from the plan for good.
      mp::log::warn("modbus %s: %s 0x%04X (%u registers) not supported by the device; dropped",
                    d.cfg.name.c_str(), req.fc == 4 ? "ir" : "hr", req.start, req.count);
      d.spans.erase(std::remove_if(d.spans.begin(), d.spans.end(),
                                   [&](const Span& s) {
                                     return s.fc == req.fc && s.start >= req.start &&
                                            s.end() <= req.end();
                                   }),
                    d.spans.end());
      plan.erase(plan.begin() + static_cast<std::ptrdiff_t>(idx));
      return true;
    }
    return false;
  }

  bool poll(Device& d, const BlockSink& sink) {
    const int64_t now = mp::clock::mono_ns();
    ++d.polls;
    ++d.poll_seq;
    std::string why;
    // An unavailable device gets one attempt per request, no retries.
    const int retries = d.state == DeviceState::ok ? cfg.retries : 0;
    bool ok = true;
    std::vector<RawBlock> blocks;
    if (d.sunspec && !d.discovered) ok = discover(d, why);
    if (ok && !d.once.empty()) {
      std::vector<ReadRequest> once = d.once;
      for (size_t i = 0; ok && i < once.size(); ++i) ok = execute(d, i, once, blocks, retries, why);
      if (ok) d.once.clear();
    }
    for (size_t i = 0; ok && i < d.plan.size();) {
      const size_t before = d.plan.size();
      ok = execute(d, i, d.plan, blocks, retries, why);
      // Skip the pieces the request became: 1 + growth of the plan (0 when it was dropped).
      i = i + 1 + d.plan.size() - before;
    }
    if (!blocks.empty()) {
      for (auto& b : blocks) b.poll_seq = d.poll_seq;
      blocks.back().last = true;
      blocks.back().poll_complete = ok;
      for (const auto& b : blocks) sink(b);
    }
    const int64_t interval = int64_t{std::max(1, d.cfg.interval_ms)} * kMsNs;
    if (ok) {
      if (d.state == DeviceState::unavailable)
        mp::log::info("modbus %s (unit %d): available again", d.cfg.name.c_str(), d.cfg.unit_id);
      d.state = DeviceState::ok;
      d.consecutive_failures = 0;
      d.backoff_ms = 0;
      d.next_due = std::max(d.next_due + interval, now);
      if (d.next_due > now + interval) d.next_due = now + interval;
      return true;
    }
    ++d.failed_polls;
    ++d.consecutive_failures;
    d.last_error = why;
    if (d.sunspec && d.state == DeviceState::unavailable) d.discovered = false;
    if (d.state == DeviceState::ok && d.consecutive_failures >= cfg.unavailable_after) {
      d.state = DeviceState::unavailable;
      mp::log::warn("modbus %s (unit %d): unavailable after %d failed polls: %s",
                    d.cfg.name.c_str(), d.cfg.unit_id, d.consecutive_failures, why.c_str());
    } else if (d.state == DeviceState::ok) {
      mp::log::debug("modbus %s (unit %d): poll failed: %s", d.cfg.name.c_str(), d.cfg.unit_id,
                     why.c_str());
    }
    // Failures are scheduled from the end of the poll (it may have waited for a timeout).
    const int64_t end = mp::clock::mono_ns();
    if (d.state == DeviceState::unavailable) {
      d.backoff_ms = d.backoff_ms == 0 ? std::max(cfg.backoff_min_ms, d.cfg.interval_ms)
                                       : std::min(cfg.backoff_max_ms, d.backoff_ms * 2);
      d.next_due = end + int64_t{d.backoff_ms} * kMsNs;
    } else {
      d.next_due = std::max(now + interval, end);
    }
    return false;
  }
};

Bus::Bus(BusConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
Bus::~Bus() = default;

const BusConfig& Bus::config() const { return impl_->cfg; }

bool Bus::add_device(const DeviceConfig& device, std::string& error) {
  auto fail = [&](std::string why) {
    error = std::move(why);
    return false;
  };
  if (device.name.empty()) return fail("device name is empty");
  for (const auto& d : impl_->devices)
    if (d.cfg.name == device.name) return fail("duplicate device name '" + device.name + "'");
  if (device.unit_id < 0 || device.unit_id > 255)
    return fail("unit id " + std::to_string(device.unit_id) + " out of range 0..255");
  if (device.interval_ms <= 0) return fail("interval_ms must be > 0");
  Device d;
  d.cfg = device;
  if (device.type == "sunspec" || device.type == "SunSpec" || device.type == "SUNSPEC") {
    d.sunspec = true;
  } else {
    d.map = find_map(device.type);
    if (!d.map) return fail("unknown meter type '" + device.type + "'");
    d.spans = map_spans(*d.map);
    d.plan = plan_reads(d.spans, device.plan);
  }
  d.added_at = mp::clock::mono_ns();
  d.next_due = d.added_at;
  impl_->devices.push_back(std::move(d));
  return true;
}

size_t Bus::device_count() const { return impl_->devices.size(); }

int64_t Bus::poll_due(int64_t now_mono_ns, const BlockSink& sink) {
  int64_t next = std::numeric_limits<int64_t>::max();
  for (auto& d : impl_->devices) {
    if (d.next_due <= now_mono_ns) impl_->poll(d, sink);
    next = std::min(next, d.next_due);
  }
  return next;
}

bool Bus::poll_device(size_t index, const BlockSink& sink) {
  if (index >= impl_->devices.size()) return false;
  return impl_->poll(impl_->devices[index], sink);
}

std::vector<DeviceStatus> Bus::status() const {
  std::vector<DeviceStatus> out;
  const int64_t now = mp::clock::mono_ns();
  for (const auto& d : impl_->devices) {
    DeviceStatus s;
    s.name = d.cfg.name;
    s.type = d.sunspec ? "sunspec" : std::string(d.map->type);
    s.unit_id = d.cfg.unit_id;
    s.state = d.state;
    s.requests = d.requests;
    s.errors = d.errors;
    const double minutes = std::max(1e-9, static_cast<double>(now - d.added_at) / 60e9);
    s.request_rate_per_min = static_cast<double>(d.requests) / minutes;
    s.error_rate_per_min = static_cast<double>(d.errors) / minutes;
    s.polls = d.polls;
    s.failed_polls = d.failed_polls;
    s.consecutive_failures = d.consecutive_failures;
    s.last_error = d.last_error;
    s.plan = d.plan;
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<ScanResult> Bus::scan(const std::vector<int>& ids, int timeout_ms) {
  std::vector<ScanResult> found;
  // Distinct probes, in all_maps() order.
  struct Probe {
    const MeterMap* map;
    const RegisterDef* def;
  };
  std::vector<Probe> probes;
  for (const MeterMap* m : all_maps()) {
    for (const auto& r : m->regs) {
      if (r.role != Role::probe_voltage) continue;
      bool dup = false;
      for (const auto& p : probes)
        if (p.def->address == r.address && p.def->fc == r.fc && p.def->type == r.type &&
            p.def->scale == r.scale && p.map->order == m->order)
          dup = true;
      if (!dup) probes.push_back({m, &r});
      break;
    }
  }
  const int saved = impl_->cfg.response_timeout_ms;
  impl_->cfg.response_timeout_ms = timeout_ms;
  impl_->set_timeout(timeout_ms);
  for (int id : ids) {
    if (id < 0 || id > 255) continue;
    bool done = false;
    for (const auto& p : probes) {
      uint16_t regs[4] = {0, 0, 0, 0};
      std::string why;
      const uint16_t n = register_count(p.def->type);
      const ReadResult r = impl_->read(nullptr, id, p.def->fc, p.def->address, n, regs, 0, why);
      if (r == ReadResult::timeout || r == ReadResult::io_error) {
        mp::log::debug("modbus scan: unit %d: %s", id, why.c_str());
        break;  // silent (or the bus is down): don't try the other maps
      }
      if (r != ReadResult::ok) continue;
      double v = 0;
      if (!decode_register(*p.map, *p.def, regs, v)) continue;
      if (v >= 90 && v <= 270) {
        found.push_back({id, std::string(p.map->type), v});
        mp::log::info("modbus scan: unit %d: %s type device, L1 voltage %.2f V", id,
                      std::string(p.map->type).c_str(), v);
        done = true;
        break;
      }
    }
    (void)done;
  }
  impl_->cfg.response_timeout_ms = saved;
  impl_->set_timeout(saved);
  return found;
}

bool Bus::connected() const { return impl_->is_connected; }

void Bus::disconnect() { impl_->drop_context(); }

void Bus::set_progress(std::function<void()> progress) { impl_->progress = std::move(progress); }

}  // namespace mp::modbus
