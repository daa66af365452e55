// `meterpipe decode sml` on every frame file of tests/data gives the recorded output
// (tests/golden/<file>.out: "exit N" and stdout), as tests/integration/test_decode_golden.py
// does for the other protocols: a change of a single byte of what the decoder says fails
// here. A deliberate change of the decoder's rules rewrites the files in the same commit,
// with the reason in its message:  MP_UPDATE_GOLDEN=1 build/tests/test_sml_golden
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "protocols/sml/tests/sml_test_data.h"

namespace td = mp::sml::testdata;

namespace {

std::string run_decode(const std::string& file) {
  const std::string cmd =
      std::string(MP_BIN_DIR) + "/meterpipe decode sml '" + file + "' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return "exit " + std::to_string(code) + "\n" + out;
}

std::string read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("decode sml output of every test frame file equals the recorded one") {
  const auto golden = td::kDir.parent_path() / "golden";
  const bool update = std::getenv("MP_UPDATE_GOLDEN") != nullptr;
  size_t count = 0;
  for (const auto& name : td::files()) {
    INFO(name);
    const std::string got = run_decode((td::kDir / name).string());
    CHECK(got.rfind("exit 0\n{\"frame\":1,", 0) == 0);
    const auto path = golden / (name + ".out");
    if (update) {
      std::filesystem::create_directories(golden);
      std::ofstream(path, std::ios::binary) << got;
    } else {
      REQUIRE_MESSAGE(std::filesystem::exists(path), "no golden output: MP_UPDATE_GOLDEN=1");
      CHECK(got == read_all(path));
    }
    ++count;
  }
  CHECK(count >= 8);
}
