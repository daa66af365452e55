#include "protocols/specs.h"

#include <algorithm>

namespace mp::protocols {

#define MP_PROTOCOL(ns, spec, runtime) \
  namespace ns {                       \
  extern const Spec spec;              \
  }
#include "protocols/list.h"
#undef MP_PROTOCOL

const std::vector<const Spec*>& all() {
  static const std::vector<const Spec*> list = {
#define MP_PROTOCOL(ns, spec, runtime) &ns::spec,
#include "protocols/list.h"
#undef MP_PROTOCOL
  };
  return list;
}

const Spec* find(std::string_view name) {
  for (const auto* d : all())
    if (d->name == name) return d;
  return nullptr;
}

namespace {
void add_unique(std::vector<std::string_view>& v, std::string_view s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}
void set_line(const SerialPreset& p, acquire::SerialSettings& s) {
  s.baud = p.baud;
  s.data_bits = p.data_bits;
  s.parity = p.parity;
  s.stop_bits = p.stop_bits;
}
}  // namespace

std::vector<std::string_view> all_sources() {
  std::vector<std::string_view> v;
  for (const auto* d : all())
    for (auto s : d->sources) add_unique(v, s);
  return v;
}

std::vector<std::string_view> all_preset_names() {
  std::vector<std::string_view> v;
  for (const auto* d : all())
    for (const auto& p : d->presets) add_unique(v, p.name);
  return v;
}

bool apply_preset(std::string_view name, acquire::SerialSettings& s) {
  for (const auto* d : all())
    for (const auto& p : d->presets)
      if (p.name == name) {
        set_line(p, s);
        return true;
      }
  return false;
}

acquire::SerialSettings serial_settings(const config::Meter& m) {
  acquire::SerialSettings s;
  s.device = m.device;
  const Spec* d = find(m.protocol);
  if (m.preset.empty() || !apply_preset(m.preset, s)) {
    if (d) set_line(d->serial_default, s);
  }
  if (m.baud) s.baud = int(m.baud);
  if (m.data_bits) s.data_bits = int(m.data_bits);
  if (m.stop_bits) s.stop_bits = int(m.stop_bits);
  if (m.parity == "none") s.parity = acquire::Parity::none;
  if (m.parity == "even") s.parity = acquire::Parity::even;
  if (m.parity == "odd") s.parity = acquire::Parity::odd;
  return s;
}

}  // namespace mp::protocols
