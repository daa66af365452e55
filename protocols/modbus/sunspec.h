// SunSpec over Modbus: marker search, model chain walk, and the pure decoders of the common
// model (1), the inverter models (101-103 integer + scale factor, 111-113 float) and the
// meter models (201-204 integer + scale factor).
//
// Layouts: sunspec/models json/model_1.json, model_10x.json, model_11x.json, model_20x.json.
// Unimplemented values ("not implemented" sentinels) are left out: int16 0x8000,
// uint16 0xFFFF, acc32 0, uint32 0xFFFFFFFF, int32 0x80000000, float NaN, and every value
// whose scale factor register is 0x8000 or outside -10..10.
//
// Sign convention of the meter models (201-204): SunSpec defines real power positive when
// it flows from the grid into the site (import) and negative on export, which is exactly
// power_net_w. Some installations mount the meter the other way round (e.g. a production
// meter); DecodeOptions::invert_meter_power flips W/WphX for those.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/reading.h"

namespace mp::sunspec {

constexpr uint16_t kMarker0 = 0x5375;  // "Su"
constexpr uint16_t kMarker1 = 0x6E53;  // "nS"
constexpr uint16_t kEndId = 0xFFFF;
// Where a SunSpec device may put its marker, in the order they are tried.
constexpr uint16_t kBaseAddresses[] = {40000, 0, 50000};

struct ModelRef {
  uint16_t id = 0;
  uint16_t address = 0;  // address of the model's ID register
  uint16_t length = 0;   // L: registers after ID and L
};

// Reads `count` holding registers at `address` into `out`; false on any error.
using ReadFn = std::function<bool(uint16_t address, uint16_t count, uint16_t* out)>;

// True when regs[0], regs[1] are the "SunS" marker.
bool is_marker(const uint16_t* regs, size_t count);

// Tries kBaseAddresses in order; sets `base` to the marker's address.
bool find_base(const ReadFn& read, uint16_t& base);

// Walks the model chain that follows the marker at `base` (first header at base + 2) until
// the end id 0xFFFF, a failed read, an address overflow or `max_models`. Returns false (and
// sets `error`) when no model could be read or the chain is malformed before its end.
bool walk_chain(const ReadFn& read, uint16_t base, std::vector<ModelRef>& models,
                std::string& error, size_t max_models = 64);

// Models whose values this decoder knows.
bool is_common_model(uint16_t id);
bool is_inverter_model(uint16_t id);  // 101-103, 111-113
bool is_meter_model(uint16_t id);     // 201-204
bool is_supported_model(uint16_t id);

struct DecodeOptions {
  bool invert_meter_power = false;
};

// Decodes one model: `data` are the L registers after ID and L. Appends values; returns
// the count appended. Unknown models append nothing. Never fails.
size_t decode_model(uint16_t id, uint16_t address, const uint16_t* data, size_t length,
                    std::vector<mp::Value>& out, const DecodeOptions& opt = {});

// Decodes a block of registers read from `start`: the block begins with a model header
// (ID, L), optionally preceded by the SunS marker, and may hold several consecutive models.
// Each model that lies entirely in the block is decoded. Returns the count appended.
size_t decode_block(uint16_t start, const uint16_t* regs, size_t count, std::vector<mp::Value>& out,
                    const DecodeOptions& opt = {});
size_t decode_block_bytes(uint16_t start, const uint8_t* bytes, size_t nbytes,
                          std::vector<mp::Value>& out, const DecodeOptions& opt = {});

// SunSpec string (2 chars per register, big-endian), cut at the first NUL, trailing
// spaces removed, non-printable bytes replaced by '?'.
std::string decode_string(const uint16_t* regs, size_t count);

}  // namespace mp::sunspec
