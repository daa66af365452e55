// Day-file retention figures (upload/day_retention.h). Prints, does not judge.
//
//   bench_day_retention day DIR [DAYS_AGO] [SEED]
//       writes one realistic day into DIR as the upload worker does: 86 400 simulated DSMR 5
//       telegrams (one a second, acquire/dsmr_sim.h) decoded (process/dsmr.h), encoded with
//       the default [upload] options (precision s) and appended through DailyFiles. The day is
//       DAYS_AGO (default 3) days before today (UTC).
//   bench_day_retention pass DIR [LEVEL]
//       one retention pass over DIR (compress, keep all) at zlib LEVEL (default 6): files,
//       bytes before/after, seconds, peak RSS of the process (run it under /usr/bin/time -v to
//       compare).
//   bench_day_retention [benchmark flags]
//       Google Benchmark: compressing one hour of such lines (3 600, ~3 MB) per iteration.
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/clock.h"
#include "meterpipe.pb.h"
#include "process/reading_proto.h"
#include "protocols/dsmr/dsmr.h"
#include "protocols/simulate/dsmr_sim.h"
#include "upload/daily_files.h"
#include "upload/day_retention.h"
#include "upload/line_protocol.h"

namespace fs = std::filesystem;
using namespace mp::upload;

namespace {

constexpr int64_t kSec = 1000000000;
constexpr int64_t kDay = 86400 * kSec;

// Appends `seconds` telegrams from `start_ns` on to the day files in `dir`; bytes written.
uint64_t write_lines(const std::string& dir, int64_t start_ns, int64_t seconds, uint64_t seed) {
  DailyFiles files;
  std::string err;
  if (!files.open(dir, err)) return 0;
  LineProtocolOptions lp;  // the [upload] defaults
  lp.precision = Precision::s;
  mp::dsmr::SimState sim;
  sim.seed = seed;
  for (int64_t i = 0; i < seconds; ++i) {
    const int64_t t = start_ns + i * kSec;
    const std::string telegram = mp::dsmr::make_telegram(t, sim);
    mp::dsmr::Result res;
    if (!mp::dsmr::decode(telegram, res)) continue;
    res.reading.meter = "home";
    res.reading.receive_time_ns = t + 150000000;  // P1 sends the telegram a bit later
    meterpipe::Reading proto;
    mp::to_proto(res.reading, &proto);
    proto.set_clock_synced(true);
    for (const auto& p : encode(proto, lp).points) files.append(p.line, p.time_ns);
  }
  files.close();
  return files.stats().bytes;
}

double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

long peak_rss_kb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

int cmd_day(int argc, char** argv) {
  const std::string dir = argv[2];
  const int days_ago = argc > 3 ? std::atoi(argv[3]) : 3;
  const uint64_t seed = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 1;
  const int64_t start = (utc_day(mp::clock::wall_ns()) - days_ago) * kDay;
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t bytes = write_lines(dir, start, 86400, seed);
  std::printf("wrote %s: %llu bytes (%.1f MB), %.1f bytes/line, %.1f s\n",
              DailyFiles::file_name(start).c_str(), (unsigned long long)bytes, double(bytes) / 1e6,
              double(bytes) / 86400, since(t0));
  return bytes ? 0 : 1;
}

int cmd_pass(int argc, char** argv) {
  RetentionOptions o;
  o.compress = true;
  o.keep_days = 0;
  o.level = argc > 3 ? std::atoi(argv[3]) : 6;
  const long rss0 = peak_rss_kb();
  const auto t0 = std::chrono::steady_clock::now();
  const auto st = retention_pass(argv[2], mp::clock::wall_ns(), o);
  const double secs = since(t0);
  std::printf(
      "level %d: %s; %llu files, %llu -> %llu bytes (ratio %.1f), %.2f s (%.1f MB/s), "
      "peak RSS %ld kB (before the pass %ld kB)\n",
      o.level, describe(st, 0).c_str(), (unsigned long long)st.compressed,
      (unsigned long long)st.plain_bytes, (unsigned long long)st.gz_bytes,
      st.gz_bytes ? double(st.plain_bytes) / double(st.gz_bytes) : 0.0, secs,
      double(st.plain_bytes) / 1e6 / secs, peak_rss_kb(), rss0);
  for (const auto& e : st.errors) std::printf("error: %s\n", e.c_str());
  return st.errors.empty() ? 0 : 1;
}

// One hour of lines, compressed per iteration (the file is restored each time).
void BM_CompressHour(benchmark::State& state) {
  char tmpl[] = "/tmp/mp-bench-retention.XXXXXX";
  if (!mkdtemp(tmpl)) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  const std::string dir = tmpl;
  const int64_t start = (utc_day(mp::clock::wall_ns()) - 3) * kDay + 12 * 3600 * kSec;
  write_lines(dir, start, 3600, 1);
  const std::string lp = dir + "/" + DailyFiles::file_name(start);
  const std::string copy = dir + "/hour.copy";
  fs::rename(lp, copy);
  const uint64_t size = fs::file_size(copy);
  RetentionOptions o;
  o.level = int(state.range(0));
  uint64_t gz = 0;
  for (auto _ : state) {
    state.PauseTiming();
    fs::remove(lp + ".gz");
    fs::copy_file(copy, lp);
    state.ResumeTiming();
    const auto st = retention_pass(dir, mp::clock::wall_ns(), o);
    if (st.compressed != 1) state.SkipWithError("nothing compressed");
    gz = st.gz_bytes;
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(size));
  state.counters["ratio"] = gz ? double(size) / double(gz) : 0;
  fs::remove_all(dir);
}
BENCHMARK(BM_CompressHour)->Arg(1)->Arg(6)->Arg(9)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "day") == 0) return cmd_day(argc, argv);
  if (argc >= 3 && std::strcmp(argv[1], "pass") == 0) return cmd_pass(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
