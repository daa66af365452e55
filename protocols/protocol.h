// What a meter protocol gives the rest of meterpipe: a Spec (what configuration needs) and a
// Runtime (runners, decoders, CLI), listed once in protocols/list.h. The stages never name a
// protocol: config validation, acquire, process, actuate and the CLI look the meter's
// protocol up (protocols/specs.h, protocols/registry.h) and use what it offers.
// See docs/ARCHITECTURE.md, "Protocols" and "Adding a protocol".
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "acquire/serial_source.h"
#include "common/reading.h"
#include "config/config.h"
#include "meterpipe.pb.h"

namespace CLI {
class App;
}

namespace mp::protocols {

// Every protocol meterpipe reads. The order is the registry's.
enum class Id { dsmr, modbus, sunspec, mbus, sml };

// What a runner needs from the acquire worker around it (acquire/worker_runners.cpp wires
// this to the bus and the worker's health). Thread-safe: each runner has its own thread.
class RunContext {
 public:
  virtual ~RunContext() = default;
  virtual bool running() const = 0;
  // Called by a runner's thread at least once per mp::wake::progress_period_ns() (at most a
  // second: the worker's watchdog).
  virtual void progress(int slot) = 0;
  // Publishes raw/<raw.source()> (stamps nothing: the runner fills the frame).
  virtual void publish(meterpipe::RawFrame&& raw) = 0;
  virtual void count(const std::string& counter, uint64_t n = 1) = 0;
  virtual void set_counter(const std::string& counter, uint64_t value) = 0;
  virtual void gauge(const std::string& name, double v) = 0;
  virtual void info(const std::string& key, const std::string& value) = 0;
};

// One acquire thread: reads one line (a P1 port, a Modbus bus, an M-Bus line) until the
// worker stops and publishes what it reads.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual void run(int slot) = 0;
};

enum class Status { reading, pending, error };

// One meter's frames to readings (process and actuate hold one per meter). Pure apart from
// what the constructor reads (key files).
class FrameDecoder {
 public:
  virtual ~FrameDecoder() = default;
  // `out` is set when Status::reading; `error` says why when Status::error. Frames of a
  // multi-frame poll return Status::pending until the one marked last_of_poll.
  virtual Status decode(const meterpipe::RawFrame& raw, Reading& out, std::string& error) = 0;
};

// Line settings of a serial protocol, under a name users may give as `preset`.
struct SerialPreset {
  std::string_view name;  // "" for a protocol's unnamed default
  int baud, data_bits;
  acquire::Parity parity;
  int stop_bits;
  std::string_view note;  // which meters use it
};

// A problem with a [[meter]] of this protocol: the TOML key it is about and the message
// (for a missing key: what needs it, e.g. " (protocol = \"modbus\")").
struct KeyProblem {
  std::string key;
  std::string message;
  bool missing = false;
};

// `meterpipe <...> <name>` subcommands a protocol adds; `run` is called when `sub` was given.
struct CliCommand {
  CLI::App* sub = nullptr;
  std::function<int()> run;
};

// What a protocol is, as configuration sees it (protocols/<name>/spec.cpp). Small on
// purpose: every worker validates its config with it and links nothing else of the protocol.
struct Spec {
  Id id;
  std::string_view name;    // protocol = "<name>" in the config, RawFrame.protocol on the bus
  std::string_view family;  // meters of one family may share a line (sunspec is "modbus")
  std::string_view summary;
  std::vector<std::string_view> sources;  // the `source` values it can be read from
  std::string_view sources_note;          // said when another source is given
  std::vector<SerialPreset> presets;      // named presets, then ...
  SerialPreset serial_default;            // ... the line settings without a preset
  // Protocol rules of one [[meter]] beyond the common keys (required keys, keys that
  // belong to other protocols). Optional.
  void (*check)(const config::Meter& m, std::vector<KeyProblem>& problems) = nullptr;
};

// What a protocol does (protocols/<name>/protocol.cpp): runners, decoders, CLI commands.
struct Runtime {
  // acquire: the runners of this protocol's meters (all of the family at once, so meters
  // that share a line share a runner). Problems: one line each, the meter named. One
  // protocol of a family makes the runners (nullptr for the others).
  void (*make_runners)(RunContext& ctx, const std::vector<const config::Meter*>& meters,
                       std::vector<std::unique_ptr<Runner>>& out,
                       std::vector<std::string>& problems) = nullptr;
  // process / actuate: the decoder of one meter. `error` is set when the meter's setup is
  // wrong (an unreadable key file); the decoder then refuses what it cannot decode.
  std::unique_ptr<FrameDecoder> (*make_decoder)(const config::Meter& m,
                                                std::string& error) = nullptr;
  // CLI: adds its subcommands under `decode` (and elsewhere in `app` if it has more).
  void (*add_cli)(CLI::App& app, CLI::App& decode, std::vector<CliCommand>& out) = nullptr;
};

}  // namespace mp::protocols
