#include "serve/prom_text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace mp::serve {
namespace {

// HELP text is a single line; backslash and newline are the only escapes it knows.
std::string help_text(const std::string& in) {
  std::string out;
  for (char c : in) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n' || c == '\r')
      out += "\\n";
    else
      out += c;
  }
  return out.empty() ? "meterpipe metric." : out;
}

void append_label_value(std::string& out, const std::string& v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

bool valid_label_name(const std::string& n) {
  if (n.empty() || n.compare(0, 2, "__") == 0) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Shortest of %.15g / %.17g that reads back as the same double.
void append_value(std::string& out, double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.15g", v);
  if (std::strtod(buf, nullptr) != v) std::snprintf(buf, sizeof buf, "%.17g", v);
  out += buf;
}

}  // namespace

PromText::PromText() = default;
PromText::~PromText() = default;

void PromText::add(const std::string& name, const std::string& help, MetricType type,
                   const Labels& labels_in, double value) {
  if (!std::isfinite(value) || !valid_metric_name(name)) {
    ++dropped_;
    return;
  }
  for (const auto& [k, v] : labels_in) {
    if (!valid_label_name(k)) {
      ++dropped_;
      return;
    }
  }
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(name, Family{help_text(help), type, {}}).first;
  } else if (it->second.type != type) {
    ++dropped_;
    return;
  }
  Labels labels = labels_in;
  std::sort(labels.begin(), labels.end());
  for (const auto& s : it->second.samples) {
    if (s.first == labels) {
      ++dropped_;
      return;
    }
  }
  if (type == MetricType::counter && value < 0) value = 0;
  it->second.samples.emplace_back(std::move(labels), value);
}

std::string PromText::text() const {
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + f.help + "\n";
    out += "# TYPE " + name + (f.type == MetricType::counter ? " counter\n" : " gauge\n");
    for (const auto& [labels, value] : f.samples) {
      out += name;
      if (!labels.empty()) {
        out += '{';
        bool first = true;
        for (const auto& [k, v] : labels) {
          if (!first) out += ',';
          first = false;
          out += k + "=\"";
          append_label_value(out, v);
          out += '"';
        }
        out += '}';
      }
      out += ' ';
      append_value(out, value);
      out += '\n';
    }
  }
  return out;
}

}  // namespace mp::serve
