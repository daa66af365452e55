// Bus throughput: messages/s and MB/s through one pub/sub hop (ipc://, same as between
// workers) with 1 KiB RawFrame payloads, the subscriber in its own thread.
//
//   BM_PubSubHop/1024   end to end: a batch is timed from the first publish until the
//                       subscriber thread has taken the last message of the batch
//   BM_PublishOnly/1024 cost of Publisher::publish alone (stamp, serialise, send, ring)
//
// Figures: items_per_second (= msgs/s) and bytes_per_second (payload bytes), plus msgs/s and
// MB/s counters. They are figures, not assertions.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>

#include "bus/bus.h"

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/mpbench.XXXXXX";
    char* p = mkdtemp(tmpl);
    path = p ? p : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

meterpipe::Envelope frame(size_t bytes) {
  meterpipe::Envelope env;
  auto* raw = env.mutable_raw();
  raw->set_source("bench");
  raw->set_protocol("dsmr");
  raw->set_data(std::string(bytes, '\x5a'));
  raw->set_receive_time_ns(1);
  raw->set_receive_mono_ns(1);
  return env;
}

constexpr int kBatch = 1000;

void BM_PubSubHop(benchmark::State& state) {
  const size_t bytes = size_t(state.range(0));
  TempDir dir;
  mp::bus::Publisher::Options po;
  po.sndhwm = 100000;
  mp::bus::Publisher pub(dir.path, "acquire", po);

  std::atomic<uint64_t> delivered{0}, lost{0};
  std::atomic<bool> stop{false}, ready{false};
  std::thread consumer([&] {
    mp::bus::Subscriber::Options so;
    so.rcvhwm = 100000;
    mp::bus::Subscriber sub(dir.path, {"acquire"}, {"raw/"}, so);
    ready = true;
    mp::bus::Message m;
    while (!stop) {
      if (!sub.receive(m, 50)) continue;
      benchmark::DoNotOptimize(m.env.raw().data().size());
      lost.store(sub.lost(), std::memory_order_relaxed);
      delivered.fetch_add(1, std::memory_order_release);
    }
  });
  while (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  // Slow joiner: wait until a raw/bench message gets through; count from there.
  auto env = frame(bytes);
  for (int i = 0; i < 500 && delivered.load() == 0; ++i) {
    pub.publish("raw/bench", env);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (delivered.load() == 0) {
    stop = true;
    consumer.join();
    state.SkipWithError("subscriber never connected");
    return;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  uint64_t target = delivered.load();
  const uint64_t lost0 = lost.load();

  double busy_s = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kBatch; ++i) pub.publish("raw/bench", env);
    target += kBatch;
    const auto give_up = t0 + std::chrono::seconds(5);
    while (delivered.load(std::memory_order_acquire) + (lost.load() - lost0) < target) {
      if (std::chrono::steady_clock::now() > give_up) break;
      // sleep, not spin: the consumer needs the CPU more than this thread
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    busy_s += s;
    state.SetIterationTime(s);
  }
  stop = true;
  consumer.join();
  const double msgs = double(state.iterations()) * kBatch;
  state.SetItemsProcessed(int64_t(msgs));
  state.SetBytesProcessed(int64_t(msgs * double(bytes)));
  state.counters["msgs/s"] = benchmark::Counter(msgs / busy_s);
  state.counters["MB/s"] = benchmark::Counter(msgs * double(bytes) / busy_s / 1e6);
  state.counters["lost"] = benchmark::Counter(double(lost.load() - lost0));
  state.counters["envelope_B"] = benchmark::Counter(double(env.ByteSizeLong()));
}
BENCHMARK(BM_PubSubHop)->Arg(1024)->Arg(64)->UseManualTime()->Unit(benchmark::kMillisecond);

void BM_PublishOnly(benchmark::State& state) {
  const size_t bytes = size_t(state.range(0));
  TempDir dir;
  mp::bus::Publisher pub(dir.path, "acquire");
  auto env = frame(bytes);
  for (auto _ : state) benchmark::DoNotOptimize(pub.publish("raw/bench", env));
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * int64_t(bytes));
}
BENCHMARK(BM_PublishOnly)->Arg(1024);

}  // namespace

BENCHMARK_MAIN();
