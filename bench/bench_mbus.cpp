// Frames decoded per second over libmbus's test corpus (tests/data/mbus/test-frames).
#include <benchmark/benchmark.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/reading.h"
#include "protocols/mbus/mbus.h"

#ifndef MP_TEST_DATA_DIR
#define MP_TEST_DATA_DIR "tests/data"
#endif

namespace {

std::vector<std::vector<uint8_t>> load_corpus() {
  std::vector<std::vector<uint8_t>> frames;
  const auto dir = std::filesystem::path(MP_TEST_DATA_DIR) / "mbus" / "test-frames";
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".hex") continue;
    std::ifstream in(e.path());
    std::vector<uint8_t> f;
    std::string tok;
    while (in >> tok) f.push_back(static_cast<uint8_t>(std::stoul(tok, nullptr, 16)));
    frames.push_back(std::move(f));
  }
  return frames;
}

const std::vector<std::vector<uint8_t>>& corpus() {
  static const auto c = load_corpus();
  return c;
}

void BM_DecodeCorpus(benchmark::State& state) {
  const auto& frames = corpus();
  size_t bytes = 0;
  for (auto _ : state) {
    for (const auto& f : frames) {
      auto r = mp::mbus::decode(f);
      benchmark::DoNotOptimize(r);
      bytes += f.size();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * frames.size()));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["frames"] = static_cast<double>(frames.size());
}
BENCHMARK(BM_DecodeCorpus);

void BM_DecodeAndMapCorpus(benchmark::State& state) {
  const auto& frames = corpus();
  for (auto _ : state) {
    for (const auto& f : frames) {
      auto r = mp::mbus::decode(f);
      mp::Reading reading;
      mp::mbus::to_reading(r.frame, reading);
      benchmark::DoNotOptimize(reading);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * frames.size()));
}
BENCHMARK(BM_DecodeAndMapCorpus);

void BM_ToJsonCorpus(benchmark::State& state) {
  std::vector<mp::mbus::Frame> decoded;
  for (const auto& f : corpus()) decoded.push_back(mp::mbus::decode(f).frame);
  for (auto _ : state) {
    for (const auto& f : decoded) benchmark::DoNotOptimize(mp::mbus::to_json(f));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * decoded.size()));
}
BENCHMARK(BM_ToJsonCorpus);

}  // namespace

BENCHMARK_MAIN();
