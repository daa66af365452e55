// The key reader of every config table: typed getters with ranges and choices, and the
// FILE:LINE:COL: key: message errors (docs/ARCHITECTURE.md, "Configuration"). Each table's
// reader (config.cpp, mqtt_config.cpp, ...) takes a Scope, reads its keys and calls finish(),
// which refuses every key it did not read.
#pragma once

#include <toml++/toml.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace mp::config {

inline const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}

// Reads keys of one table, remembering which were used, and reports problems.
class Checker {
 public:
  Checker(std::string file, std::vector<Error>& errors) : file_(std::move(file)), errors_(errors) {}

  void error_at(const toml::source_region& src, const std::string& key, const std::string& msg) {
    errors_.push_back(Error{file_, int(src.begin.line), int(src.begin.column), key, msg});
  }

  // Table scope: `path` is the key path of the table ("general", "meter[0]").
  struct Scope {
    Checker& c;
    const toml::table& t;
    std::string path;
    std::set<std::string> allowed;

    std::string key(const std::string& k) const { return path.empty() ? k : path + "." + k; }
    const toml::node* node(const std::string& k) {
      allowed.insert(k);
      return t.get(k);
    }
    void type_error(const toml::node& n, const std::string& k, const char* want) {
      c.error_at(n.source(), key(k),
                 std::string("must be ") + want + ", not " + type_name(n.type()));
    }
    // A problem with the value of key k (at the key, or at the table when k is absent).
    void error_key(const std::string& k, const std::string& msg) {
      const toml::node* n = t.get(k);
      c.error_at(n ? n->source() : t.source(), key(k), msg);
    }
    void missing(const std::string& k, const std::string& what = "") {
      c.error_at(t.source(), key(k), "required key is missing" + what);
    }

    bool str(const std::string& k, std::string& out, bool required = false,
             const std::vector<std::string_view>& choices = {}) {
      const toml::node* n = node(k);
      if (!n) {
        if (required) missing(k);
        return false;
      }
      if (!n->is_string()) {
        type_error(*n, k, "a string");
        return false;
      }
      std::string v = n->as_string()->get();
      if (choices.size()) {
        bool ok = false;
        std::string list;
        for (std::string_view ch : choices) {
          if (v == ch) ok = true;
          list += list.empty() ? "" : ", ";
          list += "\"" + std::string(ch) + "\"";
        }
        if (!ok) {
          c.error_at(n->source(), key(k), "\"" + v + "\" is not one of " + list);
          return false;
        }
      }
      if (required && v.empty()) {
        c.error_at(n->source(), key(k), "must not be empty");
        return false;
      }
      out = std::move(v);
      return true;
    }

    bool boolean(const std::string& k, bool& out) {
      const toml::node* n = node(k);
      if (!n) return false;
      if (!n->is_boolean()) {
        type_error(*n, k, "a boolean (true or false)");
        return false;
      }
      out = n->as_boolean()->get();
      return true;
    }

    bool integer(const std::string& k, int64_t& out, int64_t lo, int64_t hi,
                 bool required = false) {
      const toml::node* n = node(k);
      if (!n) {
        if (required) missing(k);
        return false;
      }
      if (!n->is_integer()) {
        type_error(*n, k, "an integer");
        return false;
      }
      int64_t v = n->as_integer()->get();
      if (v < lo || v > hi) {
        c.error_at(n->source(), key(k),
                   std::to_string(v) + " is out of range " + std::to_string(lo) + ".." +
                       std::to_string(hi));
        return false;
      }
      out = v;
      return true;
    }

    bool number(const std::string& k, double& out, double lo, double hi, bool required = false) {
      const toml::node* n = node(k);
      if (!n) {
        if (required) missing(k);
        return false;
      }
      double v;
      if (n->is_integer())
        v = double(n->as_integer()->get());
      else if (n->is_floating_point())
        v = n->as_floating_point()->get();
      else {
        type_error(*n, k, "a number");
        return false;
      }
      if (!(v >= lo && v <= hi)) {
        std::ostringstream os;
        os << v << " is out of range " << lo << ".." << hi;
        c.error_at(n->source(), key(k), os.str());
        return false;
      }
      out = v;
      return true;
    }

    bool str_array(const std::string& k, std::vector<std::string>& out) {
      const toml::node* n = node(k);
      if (!n) return false;
      const toml::array* a = n->as_array();
      if (!a) {
        type_error(*n, k, "an array of strings");
        return false;
      }
      std::vector<std::string> v;
      size_t i = 0;
      for (const auto& e : *a) {
        if (!e.is_string()) {
          c.error_at(e.source(), key(k) + "[" + std::to_string(i) + "]",
                     std::string("must be a string, not ") + type_name(e.type()));
          return false;
        }
        v.push_back(e.as_string()->get());
        ++i;
      }
      out = std::move(v);
      return true;
    }

    const toml::table* table(const std::string& k) {
      const toml::node* n = node(k);
      if (!n) return nullptr;
      if (!n->is_table()) {
        type_error(*n, k, "a table");
        return nullptr;
      }
      return n->as_table();
    }

    // Secrets never live in the config: a key like "password" is refused with the way to
    // give it (NAME_file or NAME_env).
    void refuse_secrets(std::initializer_list<const char*> names) {
      for (const char* name : names) {
        const toml::node* n = t.get(name);
        if (!n) continue;
        allowed.insert(name);
        c.error_at(n->source(), key(name),
                   "secrets are not kept in the config: use " + std::string(name) + "_file or " +
                       name + "_env");
      }
    }

    // A file the worker must read, checked now so that check-config finds it.
    void readable_file(const std::string& k, const std::string& path, const char* what) {
      if (path.empty() || access(path.c_str(), R_OK) == 0) return;
      const toml::node* n = t.get(k);
      c.error_at(n ? n->source() : t.source(), key(k),
                 "cannot read " + path + ": " + std::strerror(errno) + " (" + what + ")");
    }

    // Every key not read is a typo or a key of another version: an error, never ignored.
    void finish() {
      for (const auto& [k, v] : t) {
        if (allowed.count(std::string(k.str()))) continue;
        c.error_at(k.source(), key(std::string(k.str())), "unknown key");
      }
    }
  };

  Scope scope(const toml::table& t, std::string path) {
    return Scope{*this, t, std::move(path), {}};
  }

 private:
  std::string file_;
  std::vector<Error>& errors_;
};

}  // namespace mp::config
