// SML decode time per frame, ours next to libsml's (volkszaehler, Debian libsml-dev, loaded
// with dlopen) in the same run, over the real frames of protocols/sml/tests/data and over
// frames of the simulated three-phase meter (14 values, 408 bytes each). "ours" = transport check
// (CRC-16/X-25, unescaping) + messages + entries; "ours_reading" adds the canonical names;
// "libsml" = sml_file_parse + sml_value_to_double of every entry (no CRC check: libsml's
// 2018 snapshot does none) + sml_file_free.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "protocols/sml/sml.h"
#include "protocols/sml/sml_sim.h"
#include "protocols/sml/tests/libsml_oracle.h"
#include "protocols/sml/tests/sml_test_data.h"

namespace {

std::vector<std::string> real_frames() {
  std::vector<std::string> all;
  for (const auto& name : mp::sml::testdata::files())
    for (auto& f : mp::sml::testdata::frames(name)) all.push_back(std::move(f));
  return all;
}

std::vector<std::string> sim_frames() {
  std::vector<std::string> all;
  mp::sml::SimState s;
  for (int i = 0; i < 16; ++i)
    all.push_back(mp::sml::make_sim_frame((1751371200LL + i * 977) * 1000000000, s));
  return all;
}

const std::vector<std::string>& frames(int set) {
  static const auto real = real_frames(), sim = sim_frames();
  return set == 0 ? real : sim;
}

const char* set_name(int set) { return set == 0 ? "real frames" : "simulated 3-phase"; }

void BM_Ours(benchmark::State& state) {
  const auto& fs = frames(int(state.range(0)));
  mp::sml::File file;
  std::string err;
  for (auto _ : state)
    for (const auto& f : fs) {
      mp::sml::decode_frame({reinterpret_cast<const uint8_t*>(f.data()), f.size()}, file, err);
      benchmark::DoNotOptimize(file.entries.data());
    }
  state.SetItemsProcessed(int64_t(state.iterations() * fs.size()));
  state.SetLabel(set_name(int(state.range(0))));
}

void BM_OursReading(benchmark::State& state) {
  const auto& fs = frames(int(state.range(0)));
  mp::sml::File file;
  std::string err;
  for (auto _ : state)
    for (const auto& f : fs) {
      mp::sml::decode_frame({reinterpret_cast<const uint8_t*>(f.data()), f.size()}, file, err);
      mp::Reading r;
      mp::sml::to_reading(file, r);
      benchmark::DoNotOptimize(r.values.data());
    }
  state.SetItemsProcessed(int64_t(state.iterations() * fs.size()));
  state.SetLabel(set_name(int(state.range(0))));
}

void BM_LibSml(benchmark::State& state) {
  static const mp::sml::oracle::LibSml lib;
  if (!lib.ok()) {
    state.SkipWithError(lib.error.c_str());
    return;
  }
  const auto& fs = frames(int(state.range(0)));
  std::vector<mp::sml::oracle::Entry> out;
  for (auto _ : state)
    for (const auto& f : fs) {
      out.clear();
      mp::sml::oracle::entries(lib, f, out);
      benchmark::DoNotOptimize(out.data());
    }
  state.SetItemsProcessed(int64_t(state.iterations() * fs.size()));
  state.SetLabel(set_name(int(state.range(0))));
}

}  // namespace

BENCHMARK(BM_Ours)->Arg(0)->Arg(1);
BENCHMARK(BM_OursReading)->Arg(0)->Arg(1);
BENCHMARK(BM_LibSml)->Arg(0)->Arg(1);
BENCHMARK_MAIN();
