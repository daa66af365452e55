// Collects metric samples by family and writes the Prometheus text exposition format
// (version 0.0.4) (pure).
//
// Not prometheus-cpp: its TextSerializer would do, but libprometheus-cpp-core costs 124 KiB
// of resident memory as a shared library (Debian ships no static one), and the serve worker
// must stay under 10 MB RSS with one meter while the libraries every worker shares
// (protobuf, ZeroMQ, libstdc++) already take ~8 MB of it. The format is small: HELP and
// TYPE lines, then `name{label="value",...} number` with \\, \" and \n escaped.
//
// Families are sorted by name, each with HELP and TYPE once. A sample whose family already
// exists with another type, or whose label set the family already has, is dropped (and
// counted): two sources mapping to one series must never produce an invalid exposition.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "serve/metric_names.h"

namespace mp::serve {

class PromText {
 public:
  using Labels = std::vector<std::pair<std::string, std::string>>;
  PromText();
  ~PromText();
  void add(const std::string& name, const std::string& help, MetricType type, const Labels& labels,
           double value);
  std::string text() const;
  size_t dropped() const { return dropped_; }

 private:
  struct Family {
    std::string help;
    MetricType type;
    std::vector<std::pair<Labels, double>> samples;
  };
  std::map<std::string, Family> families_;
  size_t dropped_ = 0;
};

}  // namespace mp::serve
