// DSMR decode cost per telegram (DSMR 5 v5.txt, Belgian fluvius_v171.txt, a simulated DSMR 5
// telegram), framer throughput, and the cost of making a simulated telegram.
// Goal (issue 3): <= 5 us per DSMR 5 telegram decode at -O2 on the dev machine.
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

#include "protocols/dsmr/dsmr_framer.h"
#include "protocols/simulate/dsmr_sim.h"
#include "protocols/dsmr/dsmr.h"

#ifndef MP_TEST_DATA_DIR
#define MP_TEST_DATA_DIR "tests/data"
#endif

namespace {

std::string load(const char* name) {
  std::ifstream f(std::string(MP_TEST_DATA_DIR) + "/dsmr/" + name, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void decode_bench(benchmark::State& state, const std::string& telegram) {
  if (telegram.empty()) {
    state.SkipWithError("telegram not found (MP_TEST_DATA_DIR)");
    return;
  }
  mp::dsmr::Result r;
  for (auto _ : state) {
    bool ok = mp::dsmr::decode(telegram, r);
    benchmark::DoNotOptimize(ok);
    benchmark::DoNotOptimize(r.reading.values.data());
  }
  state.counters["values"] = static_cast<double>(r.reading.values.size());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(telegram.size()));
}

void BM_DecodeDsmr5(benchmark::State& state) { decode_bench(state, load("v5.txt")); }
BENCHMARK(BM_DecodeDsmr5);

void BM_DecodeFluvius(benchmark::State& state) { decode_bench(state, load("fluvius_v171.txt")); }
BENCHMARK(BM_DecodeFluvius);

void BM_DecodeSimulated(benchmark::State& state) {
  mp::dsmr::SimState s;
  decode_bench(state, mp::dsmr::make_telegram(1718870400LL * 1000000000LL, s));
}
BENCHMARK(BM_DecodeSimulated);

void BM_Crc16(benchmark::State& state) {
  std::string t = load("v5.txt");
  for (auto _ : state) benchmark::DoNotOptimize(mp::dsmr::crc16(t));
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(t.size()));
}
BENCHMARK(BM_Crc16);

// Framer over a stream of telegrams with noise between them, fed in 64-byte chunks (a serial
// read at 115200 Bd returns tens of bytes at a time).
void BM_Framer(benchmark::State& state) {
  std::string stream;
  for (const char* n : {"v5.txt", "v4_2.txt", "fluvius_v171.txt", "v2_2.txt"}) {
    stream += load(n);
    stream += "\r\n noise \r\n";
  }
  mp::dsmr::Framer f;
  std::string t;
  for (auto _ : state) {
    for (size_t i = 0; i < stream.size(); i += 64)
      f.feed(reinterpret_cast<const uint8_t*>(stream.data()) + i,
             std::min<size_t>(64, stream.size() - i));
    while (f.pop(t)) benchmark::DoNotOptimize(t.data());
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(stream.size()));
}
BENCHMARK(BM_Framer);

void BM_SimTelegram(benchmark::State& state) {
  mp::dsmr::SimState s;
  int64_t t = 1718870400LL * 1000000000LL;
  for (auto _ : state) {
    t += 1000000000LL;
    std::string tg = mp::dsmr::make_telegram(t, s);
    benchmark::DoNotOptimize(tg.data());
  }
}
BENCHMARK(BM_SimTelegram);

}  // namespace

BENCHMARK_MAIN();
