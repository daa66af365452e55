// `meterpipe user add|passwd|del|token`: the accounts of the live page (serve's users file,
// serve/users.h; docs/ARCHITECTURE.md, "Accounts").
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace mp::cli {

class UserCommands {
 public:
  explicit UserCommands(CLI::App& app);  // adds the subcommand `user`
  bool chosen() const;
  int run();  // exit code: 0 done, 1 failed, 2 bad input

 private:
  CLI::App* user_ = nullptr;
  CLI::App *add_ = nullptr, *passwd_ = nullptr, *del_ = nullptr, *token_ = nullptr;
  std::string name_, role_, users_file_, config_file_;
};

}  // namespace mp::cli
