// Unit tests of the serve worker's Prometheus naming (serve/metric_names.h) and text
// exposition (serve/prom_text.h): names must pass `promtool check metrics`' lint rules.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "serve/metric_names.h"
#include "serve/prom_text.h"

using namespace mp::serve;

TEST_CASE("canonical value names become metric names with units spelled out") {
  struct Case {
    const char* value;
    const char* metric;
    MetricType type;
  } cases[] = {
      {"power_import_w", "meterpipe_power_import_watts", MetricType::gauge},
      {"power_export_w", "meterpipe_power_export_watts", MetricType::gauge},
      {"power_net_w", "meterpipe_power_net_watts", MetricType::gauge},
      {"power_l1_w", "meterpipe_power_l1_watts", MetricType::gauge},
      {"voltage_l2_v", "meterpipe_voltage_l2_volts", MetricType::gauge},
      {"current_l3_a", "meterpipe_current_l3_amperes", MetricType::gauge},
      {"frequency_hz", "meterpipe_frequency_hertz", MetricType::gauge},
      {"power_apparent_va", "meterpipe_power_apparent_voltamperes", MetricType::gauge},
      {"power_factor", "meterpipe_power_factor", MetricType::gauge},
      {"tariff", "meterpipe_tariff", MetricType::gauge},
      {"demand_avg_w", "meterpipe_demand_avg_watts", MetricType::gauge},
      {"demand_max_month_w", "meterpipe_demand_max_month_watts", MetricType::gauge},
      {"energy_import_kwh", "meterpipe_energy_import_kwh_total", MetricType::counter},
      {"energy_export_t2_kwh", "meterpipe_energy_export_t2_kwh_total", MetricType::counter},
      {"energy_reactive_import_kvarh", "meterpipe_energy_reactive_import_kvarh_total",
       MetricType::counter},
      {"gas_m3", "meterpipe_gas_m3_total", MetricType::counter},
      {"water_m3", "meterpipe_water_m3_total", MetricType::counter},
      {"heat_gj", "meterpipe_heat_gj_total", MetricType::counter},
      {"power_failures", "meterpipe_power_failures_total", MetricType::counter},
      {"voltage_sags_l1", "meterpipe_voltage_sags_l1_total", MetricType::counter},
  };
  for (const auto& c : cases) {
    CAPTURE(c.value);
    auto m = value_metric(c.value);
    REQUIRE(m);
    CHECK(m->name == c.metric);
    CHECK(m->type == c.type);
    CHECK(m->scale == 1);
    CHECK(lint_name(m->name, m->type) == "");
  }
}

TEST_CASE("protocol-native leftovers are not metric names") {
  for (const char* n : {"dsmr_0-1:24.1.0", "modbus_ir:0x0000", "mbus_DIF 04 VIF 03", "sunspec_x",
                        "", "Power", "9lives"})
    CHECK_FALSE(value_metric(n));
  // names that would shadow serve's own families are refused too
  CHECK_FALSE(value_metric("worker_up"));
  CHECK_FALSE(value_metric("relay_on"));
}

TEST_CASE("worker health names: units, suffixes and types pass promtool's lint") {
  struct Case {
    const char* key;
    bool counter;
    const char* metric;
    double scale;
  } cases[] = {
      {"crc_errors", true, "meterpipe_worker_crc_errors_total", 1},
      {"points_sent", true, "meterpipe_worker_points_sent_total", 1},
      {"bytes_total", true, "meterpipe_worker_bytes_total", 1},
      {"request_count", true, "meterpipe_worker_request_count_total", 1},
      {"wait_ms", true, "meterpipe_worker_wait_seconds_total", 1e-3},
      {"oldest_unsent_age_s", false, "meterpipe_worker_oldest_unsent_age_seconds", 1},
      {"spool_mb", false, "meterpipe_worker_spool_bytes", 1048576.0},
      {"projected_demand_w", false, "meterpipe_worker_projected_demand_watts", 1},
      {"points_pending", false, "meterpipe_worker_points_pending", 1},
      {"queue_count", false, "meterpipe_worker_queue_count_value", 1},
      {"retries_total", false, "meterpipe_worker_retries_total_value", 1},
      {"Strange Key!", false, "meterpipe_worker_strange_key", 1},
      {"error_counter", true, "meterpipe_worker_error_counters_total", 1},
      {"x:y", false, "meterpipe_worker_x_y", 1},
      {"", false, "meterpipe_worker_unnamed", 1},
  };
  for (const auto& c : cases) {
    CAPTURE(c.key);
    const MetricName m = c.counter ? worker_counter_metric(c.key) : worker_gauge_metric(c.key);
    CHECK(m.name == c.metric);
    CHECK(m.scale == doctest::Approx(c.scale));
    CHECK(lint_name(m.name, m.type) == "");
  }
}

TEST_CASE("lint_name catches what promtool rejects") {
  CHECK(lint_name("meterpipe_x", MetricType::counter) != "");
  CHECK(lint_name("meterpipe_x_total", MetricType::gauge) != "");
  CHECK(lint_name("meterpipe_age_s", MetricType::gauge) != "");
  CHECK(lint_name("meterpipe_size_mb", MetricType::gauge) != "");
  CHECK(lint_name("meterpipe_x_count", MetricType::gauge) != "");
  CHECK(lint_name("meterpipe_fooBar", MetricType::gauge) != "");
  CHECK(lint_name("meterpipe_delay_milliseconds", MetricType::gauge) != "");
  CHECK(lint_name("meterpipe_x_gauge", MetricType::gauge) != "");
  CHECK(lint_name("9x", MetricType::gauge) != "");
  CHECK(lint_name("meterpipe_ok", MetricType::gauge) == "");
}

TEST_CASE("split_subject: per-meter and per-relay health keys") {
  std::string base, subject;
  CHECK(split_subject("frames_home", {"home", "garage"}, base, subject));
  CHECK(base == "frames");
  CHECK(subject == "home");
  CHECK(split_subject("errors_main_home", {"home", "main_home"}, base, subject));
  CHECK(base == "errors");
  CHECK(subject == "main_home");
  CHECK_FALSE(split_subject("frameshome", {"home"}, base, subject));
  CHECK_FALSE(split_subject("home", {"home"}, base, subject));
  CHECK_FALSE(split_subject("_home", {"home"}, base, subject));
  CHECK_FALSE(split_subject("bus_lost", {"home"}, base, subject));
}

TEST_CASE("prom text: HELP/TYPE once per family, escaped labels, no duplicates") {
  PromText p;
  p.add("meterpipe_b", "B help", MetricType::gauge, {{"meter", "x"}}, 1.5);
  p.add("meterpipe_a_total", "A help\nwith newline \\", MetricType::counter,
        {{"worker", "w\"1\n\\"}}, 3);
  p.add("meterpipe_b", "ignored", MetricType::gauge, {{"meter", "y"}}, 2);
  p.add("meterpipe_b", "dup", MetricType::gauge, {{"meter", "x"}}, 9);     // same series
  p.add("meterpipe_b", "type", MetricType::counter, {{"meter", "z"}}, 9);  // type clash
  p.add("meterpipe_c", "nan", MetricType::gauge, {}, NAN);                 // not finite
  p.add("bad name", "x", MetricType::gauge, {}, 1);                        // bad name
  p.add("meterpipe_d", "x", MetricType::gauge, {{"__reserved", "x"}}, 1);  // bad label
  p.add("meterpipe_e", "precise", MetricType::gauge, {}, 7170.575999999999);
  p.add("meterpipe_f", "", MetricType::gauge, {}, 0.1);
  CHECK(p.dropped() == 5);
  const std::string t = p.text();
  CHECK(t ==
        "# HELP meterpipe_a_total A help\\nwith newline \\\\\n"
        "# TYPE meterpipe_a_total counter\n"
        "meterpipe_a_total{worker=\"w\\\"1\\n\\\\\"} 3\n"
        "# HELP meterpipe_b B help\n"
        "# TYPE meterpipe_b gauge\n"
        "meterpipe_b{meter=\"x\"} 1.5\n"
        "meterpipe_b{meter=\"y\"} 2\n"
        "# HELP meterpipe_e precise\n"
        "# TYPE meterpipe_e gauge\n"
        "meterpipe_e 7170.5759999999991\n"
        "# HELP meterpipe_f meterpipe metric.\n"
        "# TYPE meterpipe_f gauge\n"
        "meterpipe_f 0.1\n");
}
