// Upload figures (prints, does not judge):
//  1. drain N points (default 1 000 000) into a local influxd with the uploader
//     (upload/uploader.h, batches of 5 000), points/s; then post the same lines in the same batch
//     size with `curl --data-binary @file` (one curl process, one connection, `next` between
//     requests) into a second database; our rate / curl's rate (goal >= 0.9).
//  2. (disk written per hour: the whole pipeline's, in bench/bench_durability.py)
//  3. encoder cost per reading.
// Usage: bench_upload [points]   (needs influxd and curl in PATH; uses /tmp)
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "common/log.h"
#include "meterpipe.pb.h"
#include "tests/integration/influx_harness.h"
#include "tests/integration/points_feed.h"
#include "upload/line_protocol.h"
#include "upload/targets.h"
#include "upload/uploader.h"

namespace fs = std::filesystem;
using namespace mp::upload;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kBase = 1700000000000000000;
constexpr int64_t kSec = 1000000000;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A Belgian/Dutch DSMR 5 telegram's worth of values (~30 fields).
meterpipe::Reading dsmr_reading(int i) {
  meterpipe::Reading r;
  r.set_meter("home");
  r.set_protocol("dsmr");
  r.set_receive_time_ns(kBase + int64_t(i) * kSec);
  r.set_meter_time_ns(kBase + int64_t(i) * kSec);
  r.set_clock_synced(true);
  auto add = [&](const char* n, double v) {
    auto* x = r.add_values();
    x->set_name(n);
    x->set_number(v);
  };
  double w = 400 + (i * 37) % 3000;
  add("energy_import_t1_kwh", 12345.678 + i * 0.0001);
  add("energy_import_t2_kwh", 9876.543 + i * 0.0001);
  add("energy_export_t1_kwh", 1234.567);
  add("energy_export_t2_kwh", 2345.678 + i * 0.00005);
  add("energy_import_kwh", 22222.221 + i * 0.0002);
  add("energy_export_kwh", 3580.245 + i * 0.00005);
  add("tariff", 1 + (i / 3600) % 2);
  add("power_import_w", w);
  add("power_export_w", 0);
  add("power_net_w", w);
  add("demand_avg_w", 1234);
  add("demand_max_month_w", 4567);
  add("power_failures", 4);
  add("long_power_failures", 2);
  add("voltage_sags_l1", 1);
  add("voltage_sags_l2", 0);
  add("voltage_sags_l3", 0);
  add("voltage_swells_l1", 0);
  add("voltage_swells_l2", 0);
  add("voltage_swells_l3", 0);
  add("voltage_l1_v", 229.8 + (i % 10) * 0.1);
  add("voltage_l2_v", 231.2);
  add("voltage_l3_v", 230.4);
  add("current_l1_a", 1.2 + (i % 5));
  add("current_l2_a", 0.5);
  add("current_l3_a", 2);
  add("power_l1_w", w / 3);
  add("power_l2_w", w / 3);
  add("power_l3_w", w / 3);
  add("gas_m3", 4567.123);
  r.mutable_values(r.values_size() - 1)->set_time_ns(kBase);
  return r;
}

// A compact reading for the drain test (5 fields, ~150 bytes per line).
meterpipe::Reading small_reading(int i) {
  meterpipe::Reading r;
  r.set_meter("home");
  r.set_receive_time_ns(kBase + int64_t(i) * (kSec / 1000));  // 1 ms apart: all distinct
  r.set_clock_synced(true);
  auto add = [&](const char* n, double v) {
    auto* x = r.add_values();
    x->set_name(n);
    x->set_number(v);
  };
  add("energy_import_kwh", 12345.678 + i * 0.0001);
  add("power_net_w", (i * 37) % 3000 - 500);
  add("voltage_l1_v", 229.8 + (i % 10) * 0.1);
  add("current_l1_a", 1.25 + (i % 5));
  add("tariff", 1 + i % 2);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  mp::log::init("bench_upload", mp::log::Level::warn);
  const int n = argc > 1 ? std::atoi(argv[1]) : 1000000;
  const size_t batch = 5000;
  char tmpl[] = "/tmp/mp_bench_upload_XXXXXX";
  if (!::mkdtemp(tmpl)) return 1;
  const std::string work = tmpl;

  // ---- 3. encoder ----
  {
    LineProtocolOptions o;
    o.measurement_for = {{"gas_m3", "gas"}};
    auto r = dsmr_reading(1);
    const int reps = 20000;
    size_t bytes = 0;
    auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) bytes += encode(r, o).points[0].line.size();
    double s = since(t0);
    std::printf("encoder: %.2f us per 30-field reading (%zu bytes of line protocol)\n",
                s / reps * 1e6, bytes / reps);
  }

  // ---- 2. disk per hour: the whole pipeline's, measured at the kernel by
  //      bench/bench_durability.py (the journal replaced the spool) ----

  // ---- 1. drain N points ----
  mp::test::InfluxHarness db;
  std::string err;
  if (!db.start(&err) || !db.create_db("ours") || !db.create_db("curl")) {
    std::fprintf(stderr, "influxd: %s\n", err.c_str());
    return 1;
  }
  mp::test::PointsFeed sp;  // the points as the journals would serve them
  // Batch files for curl, written from the same encoder output.
  fs::create_directories(work + "/curl");
  std::ofstream cfg(work + "/curl/config");
  {
    auto t0 = Clock::now();
    std::ofstream part;
    int file_no = 0;
    for (int i = 0; i < n; ++i) {
      auto res = encode(small_reading(i), {});
      const auto& p = res.points[0];
      sp.add_line(p.line, p.time_ns);
      if (i % batch == 0) {
        if (part.is_open()) part.close();
        std::string f = work + "/curl/b" + std::to_string(file_no++) + ".lp";
        part.open(f);
        if (file_no > 1) cfg << "next\n";
        cfg << "url = \"" << db.url() << "/write?db=curl&precision=ns\"\n"
            << "data-binary = \"@" << f << "\"\n"
            << "header = \"Expect:\"\n"
            << "output = \"/dev/null\"\n"
            << "silent\nshow-error\n";
      }
      part << p.line << '\n';
    }
    part.close();
    cfg.close();
    std::printf("feed fill: %d points, %.0f points/s encoded\n", n, n / since(t0));
  }

  double ours_s, curl_s;
  {
    InfluxConfig c;
    c.api = InfluxConfig::Api::v1;
    c.url = db.url();
    c.db = "ours";
    UploaderOptions o;
    o.batch_points = batch;
    o.batch_age_ms = 0;
    InfluxTarget target(c);
    Uploader up(sp, target, o);
    auto t0 = Clock::now();
    std::thread t([&up] { up.run(); });
    while (up.stats().points_sent < uint64_t(n)) {
      if (up.stats().retries > 0 || up.stats().dropped_bad_data > 0) {
        std::fprintf(stderr, "uploader trouble: %s\n", up.stats().last_error.c_str());
        up.stop();
        t.join();
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ours_s = since(t0);
    up.stop();
    t.join();
  }
  {
    auto t0 = Clock::now();
    std::string cmd = "curl -K " + work + "/curl/config";
    int rc = std::system(cmd.c_str());
    curl_s = since(t0);
    if (rc != 0) std::fprintf(stderr, "curl exited with %d\n", rc);
  }
  int64_t c1 = db.query_count("ours", "SELECT count(power_net_w) FROM electricity");
  int64_t c2 = db.query_count("curl", "SELECT count(power_net_w) FROM electricity");
  std::printf("drain %d points in batches of %zu into influxd 1.6 (127.0.0.1):\n", n, batch);
  std::printf("  meterpipe uploader: %.2f s, %.0f points/s (%lld stored)\n", ours_s, n / ours_s,
              static_cast<long long>(c1));
  std::printf("  curl --data-binary: %.2f s, %.0f points/s (%lld stored)\n", curl_s, n / curl_s,
              static_cast<long long>(c2));
  std::printf("  ratio ours/curl: %.2f (goal >= 0.9)\n", curl_s / ours_s);
  db.stop();
  std::error_code ec;
  fs::remove_all(work, ec);
  return 0;
}
