#include "process/reading_proto.h"

#include <cerrno>
#include <cstdlib>

#include "common/utf8.h"

namespace mp {

namespace {

// The exact decimal text as an int64 when it is an integer that fits.
bool exact_integer(const std::string& text, int64_t& v) {
  if (text.empty() || text.find_first_not_of("-0123456789") != std::string::npos) return false;
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return false;
  v = x;
  return true;
}

}  // namespace

void to_proto(const Reading& in, meterpipe::Reading* out) {
  out->set_meter(in.meter);
  out->set_protocol(in.protocol);
  out->set_device_id(utf8::or_latin1(in.device_id));
  out->set_meter_time_ns(in.meter_time_ns);
  out->set_receive_time_ns(in.receive_time_ns);
  out->mutable_values()->Reserve(int(in.values.size()));
  for (const auto& v : in.values) {
    auto* pv = out->add_values();
    pv->set_name(v.name);
    // proto3 strings must be UTF-8 (other languages' parsers reject the message): decoders
    // give UTF-8 already; anything else that slips through is read as ISO 8859-1.
    if (v.is_text)
      pv->set_text(utf8::or_latin1(v.text));
    else
      pv->set_number(v.number);
    if (!v.exact.empty()) {
      int64_t i;
      if (exact_integer(v.exact, i))
        pv->set_integer(i);
      else
        pv->set_exact(v.exact);
    }
    pv->set_unit(v.unit);
    pv->set_native_id(v.native_id);
    if (v.time_ns) pv->set_time_ns(v.time_ns);
  }
}

void from_proto(const meterpipe::Reading& in, Reading& out) {
  out.meter = in.meter();
  out.protocol = in.protocol();
  out.device_id = in.device_id();
  out.meter_time_ns = in.meter_time_ns();
  out.receive_time_ns = in.receive_time_ns();
  out.values.clear();
  out.values.reserve(size_t(in.values_size()));
  for (const auto& pv : in.values()) {
    Value v;
    v.name = pv.name();
    v.is_text = pv.has_text();
    if (v.is_text)
      v.text = pv.text();
    else
      v.number = pv.number();
    v.unit = pv.unit();
    v.native_id = pv.native_id();
    v.time_ns = pv.time_ns();
    if (pv.has_integer())
      v.exact = std::to_string(pv.integer());
    else
      v.exact = pv.exact();
    out.values.push_back(std::move(v));
  }
}

}  // namespace mp
