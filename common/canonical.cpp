#include "common/canonical.h"

namespace mp::canonical {

namespace {

constexpr Name kNames[] = {
    // power (W; positive = import from the grid; power_net_w = import - export)
    {"power_net_w", "W", Kind::gauge, "net power: import minus export"},
    {"power_import_w", "W", Kind::gauge, "power taken from the grid"},
    {"power_export_w", "W", Kind::gauge, "power delivered to the grid"},
    {"power_l1_w", "W", Kind::gauge, "power of phase L1 (import, or signed where the meter is)"},
    {"power_l2_w", "W", Kind::gauge, "power of phase L2"},
    {"power_l3_w", "W", Kind::gauge, "power of phase L3"},
    {"power_export_l1_w", "W", Kind::gauge, "power delivered on phase L1"},
    {"power_export_l2_w", "W", Kind::gauge, "power delivered on phase L2"},
    {"power_export_l3_w", "W", Kind::gauge, "power delivered on phase L3"},
    {"power_reactive_var", "var", Kind::gauge, "reactive power"},
    {"power_reactive_l1_var", "var", Kind::gauge, "reactive power of phase L1"},
    {"power_reactive_l2_var", "var", Kind::gauge, "reactive power of phase L2"},
    {"power_reactive_l3_var", "var", Kind::gauge, "reactive power of phase L3"},
    {"power_apparent_va", "VA", Kind::gauge, "apparent power"},
    {"power_factor", "", Kind::gauge, "power factor"},
    {"power_factor_l1", "", Kind::gauge, "power factor of phase L1"},
    {"power_factor_l2", "", Kind::gauge, "power factor of phase L2"},
    {"power_factor_l3", "", Kind::gauge, "power factor of phase L3"},
    {"demand_avg_w", "W", Kind::gauge, "average import power of the running quarter hour"},
    {"demand_max_month_w", "W", Kind::gauge, "highest quarter-hour demand of the month"},
    {"pv_power_w", "W", Kind::gauge, "power of a solar inverter (AC)"},
    {"dc_power_w", "W", Kind::gauge, "DC power of an inverter"},
    // voltage, current, frequency
    {"voltage_v", "V", Kind::gauge, "voltage (single phase)"},
    {"voltage_l1_v", "V", Kind::gauge, "voltage of phase L1 to neutral"},
    {"voltage_l2_v", "V", Kind::gauge, "voltage of phase L2 to neutral"},
    {"voltage_l3_v", "V", Kind::gauge, "voltage of phase L3 to neutral"},
    {"voltage_l1_l2_v", "V", Kind::gauge, "voltage between phases L1 and L2"},
    {"voltage_l2_l3_v", "V", Kind::gauge, "voltage between phases L2 and L3"},
    {"voltage_l3_l1_v", "V", Kind::gauge, "voltage between phases L3 and L1"},
    {"voltage_thd_pct", "%", Kind::gauge, "total harmonic distortion of the voltage"},
    {"voltage_thd_l1_pct", "%", Kind::gauge, "voltage THD of phase L1"},
    {"voltage_thd_l2_pct", "%", Kind::gauge, "voltage THD of phase L2"},
    {"voltage_thd_l3_pct", "%", Kind::gauge, "voltage THD of phase L3"},
    {"dc_voltage_v", "V", Kind::gauge, "DC voltage of an inverter"},
    {"current_a", "A", Kind::gauge, "current (single phase)"},
    {"current_l1_a", "A", Kind::gauge, "current of phase L1"},
    {"current_l2_a", "A", Kind::gauge, "current of phase L2"},
    {"current_l3_a", "A", Kind::gauge, "current of phase L3"},
    {"dc_current_a", "A", Kind::gauge, "DC current of an inverter"},
    {"frequency_hz", "Hz", Kind::gauge, "grid frequency"},
    {"phase_angle_deg", "deg", Kind::gauge, "phase angle between voltage and current"},
    // temperatures (inverters)
    {"temperature_c", "C", Kind::gauge, "temperature (cabinet)"},
    {"temperature_sink_c", "C", Kind::gauge, "heat sink temperature"},
    {"temperature_transformer_c", "C", Kind::gauge, "transformer temperature"},
    {"temperature_other_c", "C", Kind::gauge, "other temperature"},
    // energy registers (kWh, only grow; _t1/_t2 per tariff, _lN per phase)
    {"energy_import_kwh", "kWh", Kind::counter, "energy taken from the grid, all tariffs"},
    {"energy_import_t1_kwh", "kWh", Kind::counter, "energy taken, tariff 1 (NL: low/night)"},
    {"energy_import_t2_kwh", "kWh", Kind::counter, "energy taken, tariff 2 (NL: normal/day)"},
    {"energy_export_kwh", "kWh", Kind::counter, "energy delivered to the grid, all tariffs"},
    {"energy_export_t1_kwh", "kWh", Kind::counter, "energy delivered, tariff 1"},
    {"energy_export_t2_kwh", "kWh", Kind::counter, "energy delivered, tariff 2"},
    {"energy_import_l1_kwh", "kWh", Kind::counter, "energy taken on phase L1"},
    {"energy_import_l2_kwh", "kWh", Kind::counter, "energy taken on phase L2"},
    {"energy_import_l3_kwh", "kWh", Kind::counter, "energy taken on phase L3"},
    {"energy_export_l1_kwh", "kWh", Kind::counter, "energy delivered on phase L1"},
    {"energy_export_l2_kwh", "kWh", Kind::counter, "energy delivered on phase L2"},
    {"energy_export_l3_kwh", "kWh", Kind::counter, "energy delivered on phase L3"},
    {"energy_total_kwh", "kWh", Kind::counter, "energy import plus export"},
    {"energy_total_t1_kwh", "kWh", Kind::counter, "energy import plus export, tariff 1"},
    {"energy_total_t2_kwh", "kWh", Kind::counter, "energy import plus export, tariff 2"},
    {"energy_total_l1_kwh", "kWh", Kind::counter, "energy import plus export, phase L1"},
    {"energy_total_l2_kwh", "kWh", Kind::counter, "energy import plus export, phase L2"},
    {"energy_total_l3_kwh", "kWh", Kind::counter, "energy import plus export, phase L3"},
    {"energy_reactive_import_kvarh", "kvarh", Kind::counter, "reactive energy, import"},
    {"energy_reactive_export_kvarh", "kvarh", Kind::counter, "reactive energy, export"},
    {"energy_reactive_total_kvarh", "kvarh", Kind::counter, "reactive energy, total"},
    {"pv_energy_kwh", "kWh", Kind::counter, "energy produced by a solar inverter"},
    // other media (sub-meters on the P1 port's M-Bus, M-Bus meters)
    {"gas_m3", "m3", Kind::counter, "gas volume"},
    {"water_m3", "m3", Kind::counter, "water volume"},
    {"heat_gj", "GJ", Kind::counter, "heat energy"},
    // events and states (P1)
    {"power_failures", "", Kind::counter, "number of power failures"},
    {"long_power_failures", "", Kind::counter, "number of long power failures"},
    {"voltage_sags_l1", "", Kind::counter, "voltage sags on phase L1"},
    {"voltage_sags_l2", "", Kind::counter, "voltage sags on phase L2"},
    {"voltage_sags_l3", "", Kind::counter, "voltage sags on phase L3"},
    {"voltage_swells_l1", "", Kind::counter, "voltage swells on phase L1"},
    {"voltage_swells_l2", "", Kind::counter, "voltage swells on phase L2"},
    {"voltage_swells_l3", "", Kind::counter, "voltage swells on phase L3"},
    {"tariff", "", Kind::state, "tariff in force (1 or 2)"},
    {"inverter_state", "", Kind::state, "SunSpec operating state of an inverter (1-8)"},
    // text
    {"equipment_id", "", Kind::text, "the meter's equipment identifier"},
    {"dsmr_version", "", Kind::text, "P1 protocol version"},
    {"text_message", "", Kind::text, "text message from the grid operator"},
    {"text_message_code", "", Kind::text, "numeric message from the grid operator"},
    {"power_failure_log", "", Kind::text, "log of long power failures (raw groups)"},
    {"demand_max_history", "", Kind::text, "highest quarter-hour demand of past months (raw)"},
};

}  // namespace

std::span<const Name> all() { return kNames; }

const Name* find(std::string_view name) {
  for (const auto& n : kNames)
    if (n.name == name) return &n;
  return nullptr;
}

}  // namespace mp::canonical
