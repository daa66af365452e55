#include "protocols/modbus/modbus_maps.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace mp::modbus {
namespace {

using enum DataType;
constexpr uint8_t HR = 3;
constexpr uint8_t IR = 4;
constexpr Role NET = Role::net_power;
constexpr Role PROBE = Role::probe_voltage;

// ---------------------------------------------------------------------------------------
// Eastron SDM630 (v1/v2). Input registers, IEEE-754 float32, high word first.
// Source: volkszaehler/mbmd meters/rs485/sdm.go (after the Eastron SDM630 register PDF).
// 0x0054 is "total system power demand" (the meter's own demand average).
constexpr RegisterDef kSdm630[] = {
    {"voltage_l1_v", 0x0000, IR, f32, 1, "V", PROBE},
    {"voltage_l2_v", 0x0002, IR, f32, 1, "V"},
    {"voltage_l3_v", 0x0004, IR, f32, 1, "V"},
    {"current_l1_a", 0x0006, IR, f32, 1, "A"},
    {"current_l2_a", 0x0008, IR, f32, 1, "A"},
    {"current_l3_a", 0x000A, IR, f32, 1, "A"},
    {"power_l1_w", 0x000C, IR, f32, 1, "W"},
    {"power_l2_w", 0x000E, IR, f32, 1, "W"},
    {"power_l3_w", 0x0010, IR, f32, 1, "W"},
    {"power_factor_l1", 0x001E, IR, f32, 1, ""},
    {"power_factor_l2", 0x0020, IR, f32, 1, ""},
    {"power_factor_l3", 0x0022, IR, f32, 1, ""},
    {"power_net_w", 0x0034, IR, f32, 1, "W", NET},
    {"power_apparent_va", 0x0038, IR, f32, 1, "VA"},
    {"power_reactive_var", 0x003C, IR, f32, 1, "var"},
    {"power_factor", 0x003E, IR, f32, 1, ""},
    {"frequency_hz", 0x0046, IR, f32, 1, "Hz"},
    {"energy_import_kwh", 0x0048, IR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x004A, IR, f32, 1, "kWh"},
    {"demand_avg_w", 0x0054, IR, f32, 1, "W"},
    {"voltage_thd_l1_pct", 0x00EA, IR, f32, 1, "%"},
    {"voltage_thd_l2_pct", 0x00EC, IR, f32, 1, "%"},
    {"voltage_thd_l3_pct", 0x00EE, IR, f32, 1, "%"},
    {"voltage_thd_pct", 0x00F8, IR, f32, 1, "%"},
    {"energy_total_kwh", 0x0156, IR, f32, 1, "kWh"},
    {"energy_import_l1_kwh", 0x015A, IR, f32, 1, "kWh"},
    {"energy_import_l2_kwh", 0x015C, IR, f32, 1, "kWh"},
    {"energy_import_l3_kwh", 0x015E, IR, f32, 1, "kWh"},
    {"energy_export_l1_kwh", 0x0160, IR, f32, 1, "kWh"},
    {"energy_export_l2_kwh", 0x0162, IR, f32, 1, "kWh"},
    {"energy_export_l3_kwh", 0x0164, IR, f32, 1, "kWh"},
    {"energy_total_l1_kwh", 0x0166, IR, f32, 1, "kWh"},
    {"energy_total_l2_kwh", 0x0168, IR, f32, 1, "kWh"},
    {"energy_total_l3_kwh", 0x016A, IR, f32, 1, "kWh"},
};

// Eastron SDM530: same register layout as the SDM630, without per-phase energies and THD.
// Source: volkszaehler/mbmd README (SDM530 served by the SDM map) and meters/rs485/sdm.go.
constexpr RegisterDef kSdm530[] = {
    {"voltage_l1_v", 0x0000, IR, f32, 1, "V", PROBE},
    {"voltage_l2_v", 0x0002, IR, f32, 1, "V"},
    {"voltage_l3_v", 0x0004, IR, f32, 1, "V"},
    {"current_l1_a", 0x0006, IR, f32, 1, "A"},
    {"current_l2_a", 0x0008, IR, f32, 1, "A"},
    {"current_l3_a", 0x000A, IR, f32, 1, "A"},
    {"power_l1_w", 0x000C, IR, f32, 1, "W"},
    {"power_l2_w", 0x000E, IR, f32, 1, "W"},
    {"power_l3_w", 0x0010, IR, f32, 1, "W"},
    {"power_factor_l1", 0x001E, IR, f32, 1, ""},
    {"power_factor_l2", 0x0020, IR, f32, 1, ""},
    {"power_factor_l3", 0x0022, IR, f32, 1, ""},
    {"power_net_w", 0x0034, IR, f32, 1, "W", NET},
    {"power_factor", 0x003E, IR, f32, 1, ""},
    {"frequency_hz", 0x0046, IR, f32, 1, "Hz"},
    {"energy_import_kwh", 0x0048, IR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x004A, IR, f32, 1, "kWh"},
};

// Eastron SDM72: totals only (no voltage, hence not found by scan).
// Source: volkszaehler/mbmd meters/rs485/sdm72.go.
constexpr RegisterDef kSdm72[] = {
    {"power_net_w", 0x0034, IR, f32, 1, "W", NET},
    {"energy_import_kwh", 0x0048, IR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x004A, IR, f32, 1, "kWh"},
    {"energy_total_kwh", 0x0156, IR, f32, 1, "kWh"},
};

// Eastron SDM120 (single phase). Source: volkszaehler/mbmd meters/rs485/sdm120.go.
constexpr RegisterDef kSdm120[] = {
    {"voltage_l1_v", 0x0000, IR, f32, 1, "V", PROBE},
    {"current_l1_a", 0x0006, IR, f32, 1, "A"},
    {"power_net_w", 0x000C, IR, f32, 1, "W", NET},
    {"power_apparent_va", 0x0012, IR, f32, 1, "VA"},
    {"power_reactive_var", 0x0018, IR, f32, 1, "var"},
    {"power_factor", 0x001E, IR, f32, 1, ""},
    {"frequency_hz", 0x0046, IR, f32, 1, "Hz"},
    {"energy_import_kwh", 0x0048, IR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x004A, IR, f32, 1, "kWh"},
    {"energy_reactive_import_kvarh", 0x004C, IR, f32, 1, "kvarh"},
    {"energy_reactive_export_kvarh", 0x004E, IR, f32, 1, "kvarh"},
    {"energy_total_kwh", 0x0156, IR, f32, 1, "kWh"},
    {"energy_reactive_total_kvarh", 0x0158, IR, f32, 1, "kvarh"},
};

// Eastron SDM220 (single phase). Source: volkszaehler/mbmd meters/rs485/sdm220.go; power,
// power factor and frequency at the SDM120/230 addresses (mbmd README lists power and PF
// for the SDM220).
constexpr RegisterDef kSdm220[] = {
    {"voltage_l1_v", 0x0000, IR, f32, 1, "V", PROBE},
    {"current_l1_a", 0x0006, IR, f32, 1, "A"},
    {"power_net_w", 0x000C, IR, f32, 1, "W", NET},
    {"power_factor", 0x001E, IR, f32, 1, ""},
    {"frequency_hz", 0x0046, IR, f32, 1, "Hz"},
    {"energy_import_kwh", 0x0048, IR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x004A, IR, f32, 1, "kWh"},
    {"energy_reactive_import_kvarh", 0x004C, IR, f32, 1, "kvarh"},
    {"energy_reactive_export_kvarh", 0x004E, IR, f32, 1, "kvarh"},
    {"energy_total_kwh", 0x0156, IR, f32, 1, "kWh"},
    {"energy_reactive_total_kvarh", 0x0158, IR, f32, 1, "kvarh"},
};

// Eastron SDM230 (single phase). Source: volkszaehler/mbmd meters/rs485/sdm230.go.
constexpr RegisterDef kSdm230[] = {
    {"voltage_l1_v", 0x0000, IR, f32, 1, "V", PROBE},
    {"current_l1_a", 0x0006, IR, f32, 1, "A"},
    {"power_net_w", 0x000C, IR, f32, 1, "W", NET},
    {"power_apparent_va", 0x0012, IR, f32, 1, "VA"},
    {"power_reactive_var", 0x0018, IR, f32, 1, "var"},
    {"power_factor", 0x001E, IR, f32, 1, ""},
    {"phase_angle_deg", 0x0024, IR, f32, 1, "deg"},
    {"frequency_hz", 0x0046, IR, f32, 1, "Hz"},
    {"energy_import_kwh", 0x0048, IR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x004A, IR, f32, 1, "kWh"},
    {"energy_reactive_import_kvarh", 0x004C, IR, f32, 1, "kvarh"},
    {"energy_reactive_export_kvarh", 0x004E, IR, f32, 1, "kvarh"},
    {"energy_total_kwh", 0x0156, IR, f32, 1, "kWh"},
};

// inepro PRO380. Holding registers, float32 high word first; powers are in kW/kvar/kVA.
// Source: volkszaehler/mbmd meters/rs485/inepro.go (after the PRO380 user manual V2.18).
constexpr RegisterDef kPro380[] = {
    {"voltage_v", 0x5000, HR, f32, 1, "V"},
    {"voltage_l1_v", 0x5002, HR, f32, 1, "V", PROBE},
    {"voltage_l2_v", 0x5004, HR, f32, 1, "V"},
    {"voltage_l3_v", 0x5006, HR, f32, 1, "V"},
    {"frequency_hz", 0x5008, HR, f32, 1, "Hz"},
    {"current_a", 0x500A, HR, f32, 1, "A"},
    {"current_l1_a", 0x500C, HR, f32, 1, "A"},
    {"current_l2_a", 0x500E, HR, f32, 1, "A"},
    {"current_l3_a", 0x5010, HR, f32, 1, "A"},
    {"power_net_w", 0x5012, HR, f32, 1000, "W", NET},
    {"power_l1_w", 0x5014, HR, f32, 1000, "W"},
    {"power_l2_w", 0x5016, HR, f32, 1000, "W"},
    {"power_l3_w", 0x5018, HR, f32, 1000, "W"},
    {"power_reactive_var", 0x501A, HR, f32, 1000, "var"},
    {"power_apparent_va", 0x5022, HR, f32, 1000, "VA"},
    {"power_factor", 0x502A, HR, f32, 1, ""},
    {"power_factor_l1", 0x502C, HR, f32, 1, ""},
    {"power_factor_l2", 0x502E, HR, f32, 1, ""},
    {"power_factor_l3", 0x5030, HR, f32, 1, ""},
    {"energy_total_kwh", 0x6000, HR, f32, 1, "kWh"},
    {"energy_total_t1_kwh", 0x6002, HR, f32, 1, "kWh"},
    {"energy_total_t2_kwh", 0x6004, HR, f32, 1, "kWh"},
    {"energy_import_kwh", 0x600C, HR, f32, 1, "kWh"},
    {"energy_import_t1_kwh", 0x600E, HR, f32, 1, "kWh"},
    {"energy_import_t2_kwh", 0x6010, HR, f32, 1, "kWh"},
    {"energy_import_l1_kwh", 0x6012, HR, f32, 1, "kWh"},
    {"energy_import_l2_kwh", 0x6014, HR, f32, 1, "kWh"},
    {"energy_import_l3_kwh", 0x6016, HR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x6018, HR, f32, 1, "kWh"},
    {"energy_export_t1_kwh", 0x601A, HR, f32, 1, "kWh"},
    {"energy_export_t2_kwh", 0x601C, HR, f32, 1, "kWh"},
    {"energy_export_l1_kwh", 0x601E, HR, f32, 1, "kWh"},
    {"energy_export_l2_kwh", 0x6020, HR, f32, 1, "kWh"},
    {"energy_export_l3_kwh", 0x6022, HR, f32, 1, "kWh"},
};

// inepro PRO1 / PRO2 (single phase). mbmd serves them with its one INEPRO map; this is the
// single-phase subset of that layout (totals; 0x5000 is the line voltage).
// Source: volkszaehler/mbmd meters/rs485/inepro.go and README ("Inepro PRO1/2").
constexpr RegisterDef kPro1[] = {
    {"voltage_l1_v", 0x5000, HR, f32, 1, "V", PROBE},
    {"frequency_hz", 0x5008, HR, f32, 1, "Hz"},
    {"current_l1_a", 0x500A, HR, f32, 1, "A"},
    {"power_net_w", 0x5012, HR, f32, 1000, "W", NET},
    {"power_reactive_var", 0x501A, HR, f32, 1000, "var"},
    {"power_apparent_va", 0x5022, HR, f32, 1000, "VA"},
    {"power_factor", 0x502A, HR, f32, 1, ""},
    {"energy_total_kwh", 0x6000, HR, f32, 1, "kWh"},
    {"energy_total_t1_kwh", 0x6002, HR, f32, 1, "kWh"},
    {"energy_total_t2_kwh", 0x6004, HR, f32, 1, "kWh"},
    {"energy_import_kwh", 0x600C, HR, f32, 1, "kWh"},
    {"energy_import_t1_kwh", 0x600E, HR, f32, 1, "kWh"},
    {"energy_import_t2_kwh", 0x6010, HR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x6018, HR, f32, 1, "kWh"},
    {"energy_export_t1_kwh", 0x601A, HR, f32, 1, "kWh"},
    {"energy_export_t2_kwh", 0x601C, HR, f32, 1, "kWh"},
};

// Janitza B23-312. Holding registers, float32. Source: volkszaehler/mbmd
// meters/rs485/janitza.go (after the Janitza B-series MID energy meter manual).
constexpr RegisterDef kJanitzaB23[] = {
    {"voltage_l1_v", 0x4A38, HR, f32, 1, "V", PROBE},
    {"voltage_l2_v", 0x4A3A, HR, f32, 1, "V"},
    {"voltage_l3_v", 0x4A3C, HR, f32, 1, "V"},
    {"current_l1_a", 0x4A44, HR, f32, 1, "A"},
    {"current_l2_a", 0x4A46, HR, f32, 1, "A"},
    {"current_l3_a", 0x4A48, HR, f32, 1, "A"},
    {"power_l1_w", 0x4A4C, HR, f32, 1, "W"},
    {"power_l2_w", 0x4A4E, HR, f32, 1, "W"},
    {"power_l3_w", 0x4A50, HR, f32, 1, "W"},
    {"power_factor_l1", 0x4A64, HR, f32, 1, ""},
    {"power_factor_l2", 0x4A66, HR, f32, 1, ""},
    {"power_factor_l3", 0x4A68, HR, f32, 1, ""},
    {"energy_import_l1_kwh", 0x4A76, HR, f32, 1, "kWh"},
    {"energy_import_l2_kwh", 0x4A78, HR, f32, 1, "kWh"},
    {"energy_import_l3_kwh", 0x4A7A, HR, f32, 1, "kWh"},
    {"energy_import_kwh", 0x4A7C, HR, f32, 1, "kWh"},
    {"energy_export_l1_kwh", 0x4A7E, HR, f32, 1, "kWh"},
    {"energy_export_l2_kwh", 0x4A80, HR, f32, 1, "kWh"},
    {"energy_export_l3_kwh", 0x4A82, HR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x4A84, HR, f32, 1, "kWh"},
};

// DZG DVH4013. Holding registers, unsigned 32-bit, high word first, fixed-point.
// Source: volkszaehler/mbmd meters/rs485/dzg.go (after DZG "Communication-Protocol_DVH4013").
// Import/export power come as two unsigned registers; power_net_w is derived from them.
constexpr RegisterDef kDzg[] = {
    {"power_import_w", 0x0000, HR, u32, 0.1, "W"},
    {"power_export_w", 0x0002, HR, u32, 0.1, "W"},
    {"voltage_l1_v", 0x0004, HR, u32, 0.01, "V", PROBE},
    {"voltage_l2_v", 0x0006, HR, u32, 0.01, "V"},
    {"voltage_l3_v", 0x0008, HR, u32, 0.01, "V"},
    {"current_l1_a", 0x000A, HR, u32, 0.001, "A"},
    {"current_l2_a", 0x000C, HR, u32, 0.001, "A"},
    {"current_l3_a", 0x000E, HR, u32, 0.001, "A"},
    {"power_factor", 0x0010, HR, u32, 0.001, ""},
    {"frequency_hz", 0x0012, HR, u32, 0.001, "Hz"},
    {"energy_import_kwh", 0x4000, HR, u32, 0.001, "kWh"},
    {"energy_import_l1_kwh", 0x4020, HR, u32, 0.001, "kWh"},
    {"energy_import_l2_kwh", 0x4040, HR, u32, 0.001, "kWh"},
    {"energy_import_l3_kwh", 0x4060, HR, u32, 0.001, "kWh"},
    {"energy_export_kwh", 0x4100, HR, u32, 0.001, "kWh"},
    {"energy_export_l1_kwh", 0x4120, HR, u32, 0.001, "kWh"},
    {"energy_export_l2_kwh", 0x4140, HR, u32, 0.001, "kWh"},
    {"energy_export_l3_kwh", 0x4160, HR, u32, 0.001, "kWh"},
};

// Saia Burgess Controls ALE3. Holding registers; the datasheet numbers registers from 1,
// so address = datasheet number - 1. Energies u32 in 0.01 kWh; voltage 1 V; current 0.1 A;
// powers signed 16-bit in 0.01 kW (= 10 W), negative = feeding back; cos phi 0.01.
// Source: volkszaehler/mbmd meters/rs485/sbc.go, power scale/sign per mbmd PR #394
// ("sbc: fix power scale"), SBC ALE3 datasheet register table.
constexpr RegisterDef kSbcAle3[] = {
    {"energy_import_kwh", 27, HR, u32, 0.01, "kWh"},
    {"energy_export_kwh", 31, HR, u32, 0.01, "kWh"},
    {"voltage_l1_v", 35, HR, u16, 1, "V", PROBE},
    {"current_l1_a", 36, HR, u16, 0.1, "A"},
    {"power_l1_w", 37, HR, i16, 10, "W"},
    {"power_reactive_l1_var", 38, HR, i16, 10, "var"},
    {"power_factor_l1", 39, HR, i16, 0.01, ""},
    {"voltage_l2_v", 40, HR, u16, 1, "V"},
    {"current_l2_a", 41, HR, u16, 0.1, "A"},
    {"power_l2_w", 42, HR, i16, 10, "W"},
    {"power_reactive_l2_var", 43, HR, i16, 10, "var"},
    {"power_factor_l2", 44, HR, i16, 0.01, ""},
    {"voltage_l3_v", 45, HR, u16, 1, "V"},
    {"current_l3_a", 46, HR, u16, 0.1, "A"},
    {"power_l3_w", 47, HR, i16, 10, "W"},
    {"power_reactive_l3_var", 48, HR, i16, 10, "var"},
    {"power_factor_l3", 49, HR, i16, 0.01, ""},
    {"power_net_w", 50, HR, i16, 10, "W", NET},
    {"power_reactive_var", 51, HR, i16, 10, "var"},
};

// ABB A/B series. Holding registers, fixed point; all-ones (unsigned) / max positive
// (signed) mean "not available". Source: volkszaehler/mbmd meters/rs485/abb.go (after the
// ABB B-series manual).
constexpr RegisterDef kAbb[] = {
    {"energy_import_kwh", 0x5000, HR, u64, 0.01, "kWh"},
    {"energy_export_kwh", 0x5004, HR, u64, 0.01, "kWh"},
    {"energy_import_l1_kwh", 0x5460, HR, u64, 0.01, "kWh"},
    {"energy_import_l2_kwh", 0x5464, HR, u64, 0.01, "kWh"},
    {"energy_import_l3_kwh", 0x5468, HR, u64, 0.01, "kWh"},
    {"energy_export_l1_kwh", 0x546C, HR, u64, 0.01, "kWh"},
    {"energy_export_l2_kwh", 0x5470, HR, u64, 0.01, "kWh"},
    {"energy_export_l3_kwh", 0x5474, HR, u64, 0.01, "kWh"},
    {"voltage_l1_v", 0x5B00, HR, u32, 0.1, "V", PROBE},
    {"voltage_l2_v", 0x5B02, HR, u32, 0.1, "V"},
    {"voltage_l3_v", 0x5B04, HR, u32, 0.1, "V"},
    {"current_l1_a", 0x5B0C, HR, u32, 0.01, "A"},
    {"current_l2_a", 0x5B0E, HR, u32, 0.01, "A"},
    {"current_l3_a", 0x5B10, HR, u32, 0.01, "A"},
    {"power_net_w", 0x5B14, HR, i32, 0.01, "W", NET},
    {"power_l1_w", 0x5B16, HR, i32, 0.01, "W"},
    {"power_l2_w", 0x5B18, HR, i32, 0.01, "W"},
    {"power_l3_w", 0x5B1A, HR, i32, 0.01, "W"},
    {"frequency_hz", 0x5B2C, HR, u16, 0.01, "Hz"},
    {"power_factor", 0x5B3A, HR, i16, 0.001, ""},
    {"power_factor_l1", 0x5B3B, HR, i16, 0.001, ""},
    {"power_factor_l2", 0x5B3C, HR, i16, 0.001, ""},
    {"power_factor_l3", 0x5B3D, HR, i16, 0.001, ""},
};

// Bernecker Engineering MPM3PM. Holding registers, 32-bit fixed point, high word first.
// Source: volkszaehler/mbmd meters/rs485/mpm3pm.go (after the MPM3PM Modbus PDF).
constexpr RegisterDef kMpm3pm[] = {
    {"energy_total_kwh", 0x00, HR, i32, 0.01, "kWh"},
    {"energy_import_kwh", 0x02, HR, u32, 0.01, "kWh"},
    {"energy_export_kwh", 0x04, HR, u32, 0.01, "kWh"},
    {"energy_reactive_total_kvarh", 0x06, HR, u32, 0.01, "kvarh"},
    {"voltage_l1_v", 0x08, HR, u32, 0.1, "V", PROBE},
    {"voltage_l2_v", 0x0A, HR, u32, 0.1, "V"},
    {"voltage_l3_v", 0x0C, HR, u32, 0.1, "V"},
    {"current_l1_a", 0x0E, HR, u32, 0.01, "A"},
    {"current_l2_a", 0x10, HR, u32, 0.01, "A"},
    {"current_l3_a", 0x12, HR, u32, 0.01, "A"},
    {"power_l1_w", 0x14, HR, i32, 0.01, "W"},
    {"power_l2_w", 0x16, HR, i32, 0.01, "W"},
    {"power_l3_w", 0x18, HR, i32, 0.01, "W"},
    {"power_reactive_l1_var", 0x1A, HR, i32, 0.01, "var"},
    {"power_reactive_l2_var", 0x1C, HR, i32, 0.01, "var"},
    {"power_reactive_l3_var", 0x1E, HR, i32, 0.01, "var"},
    {"power_factor_l1", 0x20, HR, u32, 0.001, ""},
    {"power_factor_l2", 0x22, HR, u32, 0.001, ""},
    {"power_factor_l3", 0x24, HR, u32, 0.001, ""},
    {"power_net_w", 0x26, HR, i32, 0.01, "W", NET},
    {"power_reactive_var", 0x28, HR, i32, 0.01, "var"},
    {"power_factor", 0x2A, HR, u32, 0.001, ""},
    {"frequency_hz", 0x2C, HR, u32, 0.01, "Hz"},
};

// ORNO WE-504 (single phase). Holding registers, 16-bit fixed point; energy in Wh.
// Source: volkszaehler/mbmd meters/rs485/orno1p504.go.
constexpr RegisterDef kOrnoWe504[] = {
    {"voltage_l1_v", 0x00, HR, u16, 0.1, "V", PROBE},
    {"current_l1_a", 0x01, HR, u16, 0.1, "A"},
    {"frequency_hz", 0x02, HR, u16, 0.1, "Hz"},
    {"power_net_w", 0x03, HR, u16, 1, "W", NET},
    {"power_reactive_var", 0x04, HR, u16, 1, "var"},
    {"power_apparent_va", 0x05, HR, u16, 1, "VA"},
    {"power_factor", 0x06, HR, u16, 0.001, ""},
    {"energy_total_kwh", 0x07, HR, u32, 0.001, "kWh"},
    {"energy_reactive_total_kvarh", 0x09, HR, u32, 0.001, "kvarh"},
};

// ORNO WE-514 / WE-515 (single phase). Holding registers; powers 32-bit in 0.001 kW (= 1 W),
// read signed (two's complement) here; energies 0.01 kWh.
// Source: volkszaehler/mbmd meters/rs485/orno1p.go (after "Register description
// OR-WE-514&OR-WE-515", gituser-rk/orno-modbus-mqtt).
constexpr RegisterDef kOrnoWe514[] = {
    {"frequency_hz", 0x130, HR, u16, 0.01, "Hz"},
    {"voltage_l1_v", 0x131, HR, u16, 0.01, "V", PROBE},
    {"current_l1_a", 0x139, HR, u32, 0.001, "A"},
    {"power_net_w", 0x140, HR, i32, 1, "W", NET},
    {"power_reactive_var", 0x148, HR, i32, 1, "var"},
    {"power_apparent_va", 0x150, HR, u32, 1, "VA"},
    {"power_factor", 0x158, HR, u16, 0.001, ""},
    {"energy_total_kwh", 0xA000, HR, u32, 0.01, "kWh"},
    {"energy_total_t1_kwh", 0xA002, HR, u32, 0.01, "kWh"},
    {"energy_total_t2_kwh", 0xA004, HR, u32, 0.01, "kWh"},
    {"energy_reactive_total_kvarh", 0xA01E, HR, u32, 0.01, "kvarh"},
};

// ORNO WE-516 / WE-517 (three phase). Holding registers, float32; powers in kW/kvar/kVA.
// Source: volkszaehler/mbmd meters/rs485/orno3p.go.
constexpr RegisterDef kOrnoWe516[] = {
    {"voltage_l1_v", 0x000E, HR, f32, 1, "V", PROBE},
    {"voltage_l2_v", 0x0010, HR, f32, 1, "V"},
    {"voltage_l3_v", 0x0012, HR, f32, 1, "V"},
    {"frequency_hz", 0x0014, HR, f32, 1, "Hz"},
    {"current_l1_a", 0x0016, HR, f32, 1, "A"},
    {"current_l2_a", 0x0018, HR, f32, 1, "A"},
    {"current_l3_a", 0x001A, HR, f32, 1, "A"},
    {"power_net_w", 0x001C, HR, f32, 1000, "W", NET},
    {"power_l1_w", 0x001E, HR, f32, 1000, "W"},
    {"power_l2_w", 0x0020, HR, f32, 1000, "W"},
    {"power_l3_w", 0x0022, HR, f32, 1000, "W"},
    {"power_reactive_var", 0x0024, HR, f32, 1000, "var"},
    {"power_apparent_va", 0x002C, HR, f32, 1000, "VA"},
    {"power_factor", 0x0034, HR, f32, 1, ""},
    {"power_factor_l1", 0x0036, HR, f32, 1, ""},
    {"power_factor_l2", 0x0038, HR, f32, 1, ""},
    {"power_factor_l3", 0x003A, HR, f32, 1, ""},
    {"energy_total_kwh", 0x0100, HR, f32, 1, "kWh"},
    {"energy_total_l1_kwh", 0x0102, HR, f32, 1, "kWh"},
    {"energy_total_l2_kwh", 0x0104, HR, f32, 1, "kWh"},
    {"energy_total_l3_kwh", 0x0106, HR, f32, 1, "kWh"},
    {"energy_import_kwh", 0x0108, HR, f32, 1, "kWh"},
    {"energy_import_l1_kwh", 0x010A, HR, f32, 1, "kWh"},
    {"energy_import_l2_kwh", 0x010C, HR, f32, 1, "kWh"},
    {"energy_import_l3_kwh", 0x010E, HR, f32, 1, "kWh"},
    {"energy_export_kwh", 0x0110, HR, f32, 1, "kWh"},
    {"energy_export_l1_kwh", 0x0112, HR, f32, 1, "kWh"},
    {"energy_export_l2_kwh", 0x0114, HR, f32, 1, "kWh"},
    {"energy_export_l3_kwh", 0x0116, HR, f32, 1, "kWh"},
    {"energy_total_t1_kwh", 0x0130, HR, f32, 1, "kWh"},
    {"energy_import_t1_kwh", 0x0132, HR, f32, 1, "kWh"},
    {"energy_export_t1_kwh", 0x0134, HR, f32, 1, "kWh"},
    {"energy_total_t2_kwh", 0x013C, HR, f32, 1, "kWh"},
    {"energy_import_t2_kwh", 0x013E, HR, f32, 1, "kWh"},
    {"energy_export_t2_kwh", 0x0140, HR, f32, 1, "kWh"},
};

constexpr std::string_view kMbmd = "volkszaehler/mbmd meters/rs485";

constexpr MeterMap kMaps[] = {
    // Probe order for scan(): distinctive high addresses first, generic low ones last.
    {"abb", "ABB A/B series", kMbmd, WordOrder::high_first, true, kAbb},
    {"janitza_b23", "Janitza B23-312", kMbmd, WordOrder::high_first, false, kJanitzaB23},
    {"pro380", "inepro PRO380", kMbmd, WordOrder::high_first, false, kPro380},
    {"pro1", "inepro PRO1/PRO2", kMbmd, WordOrder::high_first, false, kPro1},
    {"sdm630", "Eastron SDM630", kMbmd, WordOrder::high_first, false, kSdm630},
    {"sdm530", "Eastron SDM530", kMbmd, WordOrder::high_first, false, kSdm530},
    {"sdm230", "Eastron SDM230", kMbmd, WordOrder::high_first, false, kSdm230},
    {"sdm220", "Eastron SDM220", kMbmd, WordOrder::high_first, false, kSdm220},
    {"sdm120", "Eastron SDM120", kMbmd, WordOrder::high_first, false, kSdm120},
    {"sdm72", "Eastron SDM72", kMbmd, WordOrder::high_first, false, kSdm72},
    {"orno_we514", "ORNO WE-514/515", kMbmd, WordOrder::high_first, false, kOrnoWe514},
    {"orno_we516", "ORNO WE-516/517", kMbmd, WordOrder::high_first, false, kOrnoWe516},
    {"dzg_dvh4013", "DZG DVH4013", kMbmd, WordOrder::high_first, false, kDzg},
    {"mpm3pm", "BE MPM3PM", kMbmd, WordOrder::high_first, false, kMpm3pm},
    {"sbc_ale3", "Saia Burgess ALE3", kMbmd, WordOrder::high_first, false, kSbcAle3},
    {"orno_we504", "ORNO WE-504", kMbmd, WordOrder::high_first, false, kOrnoWe504},
};

constexpr std::array<const MeterMap*, std::size(kMaps)> make_ptrs() {
  std::array<const MeterMap*, std::size(kMaps)> a{};
  for (size_t i = 0; i < std::size(kMaps); ++i) a[i] = &kMaps[i];
  return a;
}
constexpr auto kMapPtrs = make_ptrs();

struct Alias {
  std::string_view alias, type;
};
constexpr Alias kAliases[] = {
    {"sdm", "sdm630"},           {"inepro", "pro380"},     {"pro2", "pro1"},
    {"janitza", "janitza_b23"},  {"dzg", "dzg_dvh4013"},   {"sbc", "sbc_ale3"},
    {"mpm", "mpm3pm"},           {"orno1p", "orno_we514"}, {"orno3p", "orno_we516"},
    {"orno1p504", "orno_we504"}, {"we504", "orno_we504"},  {"we514", "orno_we514"},
    {"we515", "orno_we514"},     {"we516", "orno_we516"},  {"we517", "orno_we516"},
    {"abb_ab", "abb"},
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

uint64_t gather(const uint16_t* regs, unsigned n, WordOrder order) {
  uint64_t v = 0;
  for (unsigned i = 0; i < n; ++i) {
    uint16_t w = order == WordOrder::high_first ? regs[i] : regs[n - 1 - i];
    v = (v << 16) | w;
  }
  return v;
}

void push(std::vector<mp::Value>& out, const char* name, double number, const char* unit,
          const std::string& nid) {
  mp::Value v;
  v.name = name;
  v.number = number;
  v.unit = unit;
  v.native_id = nid;
  out.push_back(std::move(v));
}

bool has(const std::vector<mp::Value>& values, size_t from, std::string_view name,
         double* number = nullptr) {
  for (size_t i = from; i < values.size(); ++i)
    if (values[i].name == name && !values[i].is_text) {
      if (number) *number = values[i].number;
      return true;
    }
  return false;
}

// Adds power_net_w from import/export among values[from..]; true when added.
bool derive_net(std::vector<mp::Value>& values, size_t from) {
  double imp = 0, exp = 0;
  if (has(values, from, "power_net_w")) return false;
  if (!has(values, from, "power_import_w", &imp) || !has(values, from, "power_export_w", &exp))
    return false;
  mp::Value v;
  v.name = "power_net_w";
  v.number = imp - exp;
  v.unit = "W";
  v.native_id = "derived";
  values.push_back(std::move(v));
  return true;
}

}  // namespace

std::span<const MeterMap* const> all_maps() { return kMapPtrs; }

std::vector<std::string_view> map_types() {
  std::vector<std::string_view> t;
  for (const auto& m : kMaps) t.push_back(m.type);
  return t;
}

const MeterMap* find_map(std::string_view type) {
  for (const auto& a : kAliases)
    if (iequals(a.alias, type)) type = a.type;
  for (const auto& m : kMaps)
    if (iequals(m.type, type)) return &m;
  return nullptr;
}

std::string native_id(uint8_t fc, uint16_t address) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%s:0x%04X", fc == 4 ? "ir" : "hr", address);
  return buf;
}

bool decode_register(const MeterMap& map, const RegisterDef& def, const uint16_t* regs,
                     double& value) {
  const unsigned n = register_count(def.type);
  const uint64_t raw = gather(regs, n, map.order);
  double v = 0;
  switch (def.type) {
    case DataType::f32: {
      const float f = std::bit_cast<float>(static_cast<uint32_t>(raw));
      if (!std::isfinite(f)) return false;
      v = f;
      break;
    }
    case DataType::i16:
      if (map.max_is_invalid && raw == 0x7FFF) return false;
      v = static_cast<int16_t>(static_cast<uint16_t>(raw));
      break;
    case DataType::u16:
      if (map.max_is_invalid && raw == 0xFFFF) return false;
      v = static_cast<double>(raw);
      break;
    case DataType::i32:
      if (map.max_is_invalid && raw == 0x7FFFFFFF) return false;
      v = static_cast<int32_t>(static_cast<uint32_t>(raw));
      break;
    case DataType::u32:
      if (map.max_is_invalid && raw == 0xFFFFFFFFu) return false;
      v = static_cast<double>(raw);
      break;
    case DataType::u64:
      if (map.max_is_invalid && raw == ~uint64_t{0}) return false;
      v = static_cast<double>(raw);
      break;
  }
  value = v * def.scale;
  // Avoid "-0" for derived import/export and tidy scaled integers.
  if (value == 0) value = 0;
  return std::isfinite(value);
}

size_t decode(const MeterMap& map, uint8_t fc, uint16_t start_address, const uint16_t* regs,
              size_t count, std::vector<mp::Value>& out) {
  const size_t before = out.size();
  if (!regs || count == 0) return 0;
  const uint32_t start = start_address;
  const uint32_t end = start + static_cast<uint32_t>(count);  // exclusive
  for (const auto& def : map.regs) {
    if (def.fc != fc) continue;
    const uint32_t a = def.address;
    const uint32_t n = register_count(def.type);
    if (a < start || a + n > end) continue;
    double value = 0;
    if (!decode_register(map, def, regs + (a - start), value)) continue;
    const std::string nid = native_id(fc, def.address);
    push(out, def.name, value, def.unit, nid);
    if (def.role == Role::net_power) {
      push(out, "power_import_w", value > 0 ? value : 0.0, "W", nid);
      push(out, "power_export_w", value < 0 ? -value : 0.0, "W", nid);
    }
  }
  derive_net(out, before);
  return out.size() - before;
}

size_t decode_bytes(const MeterMap& map, uint8_t fc, uint16_t start_address, const uint8_t* bytes,
                    size_t nbytes, std::vector<mp::Value>& out) {
  if (!bytes) return 0;
  const size_t n = std::min<size_t>(nbytes / 2, 0x10000);
  std::vector<uint16_t> regs(n);
  for (size_t i = 0; i < n; ++i)
    regs[i] = static_cast<uint16_t>((bytes[2 * i] << 8) | bytes[2 * i + 1]);
  return decode(map, fc, start_address, regs.data(), n, out);
}

bool complete(std::vector<mp::Value>& values) { return derive_net(values, 0); }

}  // namespace mp::modbus
