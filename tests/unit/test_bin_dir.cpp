#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "supervisor/bin_dir.h"

using mp::supervisor::choose_worker_dir;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/mpworkerdir.XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { (void)!std::system(("rm -rf '" + path + "'").c_str()); }
};

void make_executable(const std::string& p) {
  std::ofstream(p) << "#!/bin/sh\n";
  chmod(p.c_str(), 0755);
}

}  // namespace

TEST_CASE("worker directory: a build tree keeps the workers next to meterpipe") {
  TempDir t;
  make_executable(t.path + "/meterpipe-acquire");
  CHECK(choose_worker_dir(t.path, "../lib/meterpipe") == t.path);
}

TEST_CASE("worker directory: an installed tree has them under ../lib/meterpipe") {
  TempDir t;
  mkdir((t.path + "/bin").c_str(), 0755);
  CHECK(choose_worker_dir(t.path + "/bin", "../lib/meterpipe") == t.path + "/lib/meterpipe");
  CHECK(choose_worker_dir("/usr/bin", "../lib/meterpipe") == "/usr/lib/meterpipe");
  CHECK(choose_worker_dir("/usr/local/bin", "../lib/meterpipe") == "/usr/local/lib/meterpipe");
  CHECK(choose_worker_dir("/usr/bin", "/opt/mp/./workers/") == "/opt/mp/workers");
}

TEST_CASE("worker directory: a file that is not executable does not count") {
  TempDir t;
  std::ofstream(t.path + "/meterpipe-acquire") << "x";
  chmod((t.path + "/meterpipe-acquire").c_str(), 0644);
  CHECK(choose_worker_dir("/usr/bin", "../lib/meterpipe") == "/usr/lib/meterpipe");
  CHECK(choose_worker_dir(t.path, "../lib/meterpipe") != t.path);
}
