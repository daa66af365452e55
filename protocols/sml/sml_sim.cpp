#include "protocols/sml/sml_sim.h"

#include <algorithm>
#include <cmath>

#include "protocols/simulate/dsmr_sim.h"
#include "protocols/sml/sml_writer.h"

namespace mp::sml {

namespace {

constexpr int64_t kNs = 1000000000;

void set_obis(OutEntry& x, uint8_t c, uint8_t d, uint8_t e) {
  const uint8_t o[6] = {1, 0, c, d, e, 255};
  std::copy(o, o + 6, x.obis);
}

OutEntry number(uint8_t c, uint8_t d, uint8_t e, int unit, int scaler, int64_t v, unsigned bytes,
                bool is_signed) {
  OutEntry x;
  set_obis(x, c, d, e);
  x.unit = unit;
  x.scaler = scaler;
  x.number = v;
  x.bytes = bytes;
  x.kind = is_signed ? OutEntry::Kind::signed_ : OutEntry::Kind::unsigned_;
  return x;
}

// Energy registers: the net power integrated over the time since the last frame.
void integrate(SimState& s, int64_t unix_ns) {
  if (!s.started) {
    s.started = true;
    s.import_wh = 4200000 + double(s.seed % 1000) * 1000;  // a few years of a household
    s.export_wh = 1800000 + double(s.seed % 100) * 1000;
    s.last_ns = unix_ns;
    return;
  }
  int64_t t = s.last_ns;
  while (t < unix_ns) {
    const int64_t step = std::min<int64_t>(60 * kNs, unix_ns - t);
    const auto p = mp::dsmr::sim_power(t + step / 2, s.seed);
    const double net = p.load_l[0] + p.load_l[1] + p.load_l[2] - p.solar_l1;
    const double wh = net * double(step) / kNs / 3600.0;
    if (wh > 0)
      s.import_wh += wh;
    else
      s.export_wh -= wh;
    t += step;
  }
  s.last_ns = std::max(s.last_ns, unix_ns);
}

}  // namespace

std::string make_sim_frame(int64_t unix_ns, SimState& s) {
  integrate(s, unix_ns);
  const auto p = mp::dsmr::sim_power(unix_ns, s.seed);
  const double phase_w[3] = {p.load_l[0] - p.solar_l1, p.load_l[1], p.load_l[2]};
  const double net = phase_w[0] + phase_w[1] + phase_w[2];
  OutFile f;
  f.server_id = std::string("\x0A\x01SIM\x00", 6);
  const uint32_t serial = uint32_t(10000000 + s.seed % 90000000);
  for (int i = 3; i >= 0; --i) f.server_id += static_cast<char>((serial >> (8 * i)) & 0xFF);
  f.transaction = s.transaction;
  s.transaction += 3;
  f.sec_index = s.sec_index++;
  OutEntry id;
  set_obis(id, 96, 1, 0);
  id.kind = OutEntry::Kind::bytes;
  id.text = f.server_id;
  id.has_scaler = false;
  f.entries.push_back(id);
  // energies in 0.1 Wh, as mME meters send them
  f.entries.push_back(number(1, 8, 0, 30, -1, int64_t(std::llround(s.import_wh * 10)), 8, false));
  f.entries.back().status = 0x00100104;
  f.entries.push_back(number(2, 8, 0, 30, -1, int64_t(std::llround(s.export_wh * 10)), 8, false));
  f.entries.push_back(number(16, 7, 0, 27, 0, std::llround(net), 4, true));
  const uint8_t power_c[3] = {36, 56, 76}, volt_c[3] = {32, 52, 72}, amp_c[3] = {31, 51, 71};
  const uint64_t k = uint64_t(unix_ns / kNs) ^ s.seed;
  for (int i = 0; i < 3; ++i) {
    const double volts = 230.0 + double((k >> (4 * i)) % 50) / 10.0 - 2.5;
    f.entries.push_back(number(power_c[i], 7, 0, 27, 0, std::llround(phase_w[i]), 4, true));
    f.entries.push_back(number(volt_c[i], 7, 0, 35, -1, std::llround(volts * 10), 2, false));
    f.entries.push_back(number(amp_c[i], 7, 0, 33, -2,
                               std::llround(std::fabs(phase_w[i]) / volts * 100), 2, false));
  }
  f.entries.push_back(number(14, 7, 0, 44, -1, 500 - int64_t(k % 3) + 1, 2, false));
  return build_frame(f);
}

}  // namespace mp::sml
