// A temporary directory for one test, removed with everything in it when the test ends.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

namespace mp::test {

struct TempDir {
  std::string path;
  // `prefix`: a short name under /tmp (ipc:// socket paths must stay below ~100 characters)
  explicit TempDir(const std::string& prefix = "mptest") {
    std::string tmpl = "/tmp/" + prefix + ".XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    REQUIRE(p != nullptr);
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    // a test may have taken its own permissions away (write-error cases)
    std::filesystem::permissions(path, std::filesystem::perms::owner_all,
                                 std::filesystem::perm_options::add, ec);
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string at(const std::string& name) const { return path + "/" + name; }
};

}  // namespace mp::test
