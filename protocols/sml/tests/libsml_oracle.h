// volkszaehler's libsml (Debian libsml-dev, a 2018 snapshot) as an independent decoder for
// tests and bench/bench_sml.cpp: loaded with dlopen, so nothing in the product links it
// (protocols/sml/README.md says why). Hands back the list entries of a transport frame as
// libsml sees them.
#pragma once

#include <dlfcn.h>
#include <sml/sml_file.h>
#include <sml/sml_get_list_response.h>
#include <sml/sml_list.h>
#include <sml/sml_message.h>
#include <sml/sml_value.h>

#include <cmath>
#include <string>
#include <vector>

namespace mp::sml::oracle {

struct LibSml {
  void* handle = nullptr;
  sml_file* (*file_parse)(unsigned char*, size_t) = nullptr;
  void (*file_free)(sml_file*) = nullptr;
  double (*to_double)(sml_value*) = nullptr;
  std::string error;

  LibSml() {
    handle = dlopen("libsml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      error = std::string("dlopen libsml.so.1: ") + dlerror() + " (apt-get install libsml-dev)";
      return;
    }
    file_parse = reinterpret_cast<decltype(file_parse)>(dlsym(handle, "sml_file_parse"));
    file_free = reinterpret_cast<decltype(file_free)>(dlsym(handle, "sml_file_free"));
    to_double = reinterpret_cast<decltype(to_double)>(dlsym(handle, "sml_value_to_double"));
    if (!file_parse || !file_free || !to_double) error = "libsml.so.1 lacks a symbol";
  }
  ~LibSml() {
    if (handle) dlclose(handle);
  }
  bool ok() const { return error.empty(); }
};

struct Entry {
  std::string obj_name;
  bool has_unit = false;
  int unit = 0;
  bool is_bytes = false;
  std::string bytes;
  double value = 0;  // the value times 10^scaler
};

// Parses the messages of one transport frame the way libsml's sml_server does (the bytes
// between start and end sequence, escaping and padding left to libsml). Appends the entries
// of every GetListResponse; false when libsml parses no file.
inline bool entries(const LibSml& lib, const std::string& frame, std::vector<Entry>& out) {
  if (frame.size() < 16) return false;
  std::string copy = frame.substr(8, frame.size() - 16);
  sml_file* f = lib.file_parse(reinterpret_cast<unsigned char*>(copy.data()), copy.size());
  if (!f) return false;
  for (short i = 0; i < f->messages_len; ++i) {
    sml_message* m = f->messages[i];
    if (!m || !m->message_body || !m->message_body->tag ||
        *m->message_body->tag != SML_MESSAGE_GET_LIST_RESPONSE)
      continue;
    auto* body = static_cast<sml_get_list_response*>(m->message_body->data);
    for (sml_list* e = body ? body->val_list : nullptr; e; e = e->next) {
      Entry x;
      if (e->obj_name)
        x.obj_name.assign(reinterpret_cast<const char*>(e->obj_name->str),
                          size_t(e->obj_name->len));
      if (e->unit) {
        x.has_unit = true;
        x.unit = *e->unit;
      }
      if (e->value && (e->value->type & SML_TYPE_FIELD) == SML_TYPE_OCTET_STRING) {
        x.is_bytes = true;
        if (e->value->data.bytes)
          x.bytes.assign(reinterpret_cast<const char*>(e->value->data.bytes->str),
                         size_t(e->value->data.bytes->len));
      } else if (e->value) {
        const int scaler = e->scaler ? *e->scaler : 0;
        x.value = lib.to_double(e->value) * std::pow(10.0, scaler);
      }
      out.push_back(std::move(x));
    }
  }
  lib.file_free(f);
  return true;
}

}  // namespace mp::sml::oracle
