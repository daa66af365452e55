// M-Bus value information (EN 13757-3:2013): what a VIF, or the first VIFE after the
// extension markers 0xFD / 0xFB, says about a record's quantity, unit and scale, and the
// combinable (orthogonal) VIFE that correct the value. Pure tables, no state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace mp::mbus::vif {

struct Info {
  double factor = 1;          // to the normalised base unit
  const char* unit = "";      // normalised base unit ("Wh", "J", "m^3", "var", "%", ...)
  const char* quantity = "";  // libmbus's name where libmbus has the code, else the standard's
  // True when factor == 10^exp10 exactly (every decimal scale; not the time units).
  bool decimal = false;
  int exp10 = 0;
};

// Primary table (extension bit cleared). nullopt: no table entry (0x7B, 0x7D without E bit).
std::optional<Info> primary(unsigned code);
// Main extension table: the code of the VIFE after VIF 0xFD (EN 13757-3:2013 table 14).
Info main_extension(unsigned code);
// Alternate extension table: the code of the VIFE after VIF 0xFB (EN 13757-3:2013 table 12).
Info alternate_extension(unsigned code);

// What the combinable VIFE of a record do to its value (EN 13757-3:2013 table 15):
//   E111 0nnn  multiplicative correction factor 10^(nnn-6)
//   E111 10nn  additive correction constant 10^(nn-3) in the unit of the VIF
//   E111 1101  multiplicative correction factor 10^3 for the value (not the unit)
// They apply after every VIF table (primary, plain text, 0xFD, 0xFB). A VIFE 0xFC/0x7C
// ("extension of combinable VIFE") takes the next VIFE from the extension table (phases ...),
// which never scales; after 0x7F/0xFF the remaining VIFE are manufacturer specific and ignored.
struct Correction {
  int exp10 = 0;     // multiply by 10^exp10
  bool add = false;  // then add 10^add_exp10 (in the normalised unit)
  int add_exp10 = 0;
};
// `vife`: the record's VIFE; `first`: index of the first combinable one (1 after 0xFD/0xFB,
// whose first VIFE is the true VIF; 0 otherwise).
Correction combinable(std::span<const uint8_t> vife, size_t first);

// 10^e as the literal double (exact for |e| <= 22).
double pow10(int e);

}  // namespace mp::mbus::vif
