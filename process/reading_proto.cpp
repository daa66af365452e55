#include "process/reading_proto.h"

namespace mp {

void to_proto(const Reading& in, meterpipe::Reading* out) {
  out->set_meter(in.meter);
  out->set_protocol(in.protocol);
  out->set_device_id(in.device_id);
  out->set_meter_time_ns(in.meter_time_ns);
  out->set_receive_time_ns(in.receive_time_ns);
  out->mutable_values()->Reserve(int(in.values.size()));
  for (const auto& v : in.values) {
    auto* pv = out->add_values();
    pv->set_name(v.name);
    if (v.is_text) pv->set_text(v.text);
    else pv->set_number(v.number);
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
    if (v.is_text) v.text = pv.text();
    else v.number = pv.number();
    v.unit = pv.unit();
    v.native_id = pv.native_id();
    v.time_ns = pv.time_ns();
    out.values.push_back(std::move(v));
  }
}

}  // namespace mp
