#include "cli/user.h"

#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "config/config.h"
#include "serve/auth_crypto.h"
#include "serve/users.h"

namespace mp::cli {
namespace {

const char* kDefaultConfig = "/etc/meterpipe/meterpipe.toml";
const char* kDefaultUsers = "/etc/meterpipe/users";

// --users-file, else [serve] users_file of the config (-c or the default one), else the
// default path.
std::string users_file_of(const std::string& users_file, const std::string& cfg_file) {
  if (!users_file.empty()) return users_file;
  const std::string f = cfg_file.empty() ? kDefaultConfig : cfg_file;
  if (cfg_file.empty() && access(f.c_str(), R_OK) != 0) return kDefaultUsers;
  config::LoadOptions lo;
  lo.check_key_files = false;
  auto r = config::load_file(f, lo);
  if (!r.config) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.str().c_str());
    std::exit(2);
  }
  return r.config->serve.auth.users_file.empty() ? kDefaultUsers : r.config->serve.auth.users_file;
}

// One line of standard input; on a terminal without echo, after `prompt`.
bool read_secret(const char* prompt, std::string& out) {
  const bool tty = isatty(STDIN_FILENO);
  termios old{};
  if (tty) {
    // echo off before the prompt: what is typed after seeing it is never shown
    tcgetattr(STDIN_FILENO, &old);
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    std::fprintf(stderr, "%s", prompt);
    std::fflush(stderr);
  }
  const bool got = bool(std::getline(std::cin, out));
  if (tty) {
    tcsetattr(STDIN_FILENO, TCSANOW, &old);
    std::fprintf(stderr, "\n");
  }
  if (!out.empty() && out.back() == '\r') out.pop_back();
  return got;
}

// The new password: twice on a terminal, once from a pipe; refused when weak.
bool new_password(const std::string& user, std::string& pw) {
  if (!read_secret("New password: ", pw)) {
    std::fprintf(stderr, "no password given (one line on standard input)\n");
    return false;
  }
  if (isatty(STDIN_FILENO)) {
    std::string again;
    if (!read_secret("Again: ", again) || again != pw) {
      std::fprintf(stderr, "the two passwords differ: nothing changed\n");
      return false;
    }
  }
  const std::string weak = serve::auth::weak_password(user, pw);
  if (!weak.empty()) {
    std::fprintf(stderr,
                 "password refused: %s (use 10 or more characters, e.g. four random words)\n",
                 weak.c_str());
    return false;
  }
  return true;
}

// The users of `path`; an absent file is an empty list. False (printed) when it is broken.
bool load(const std::string& path, serve::Users& users) {
  if (access(path.c_str(), F_OK) != 0) return true;
  std::string err;
  auto u = serve::load_users_file(path, err);
  if (!u) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return false;
  }
  users = std::move(*u);
  return true;
}

bool save(const std::string& path, const serve::Users& users) {
  std::string err;
  if (serve::save_users_file(path, users, err)) return true;
  std::fprintf(stderr, "%s\n", err.c_str());
  return false;
}

}  // namespace

UserCommands::UserCommands(CLI::App& app) {
  user_ = app.add_subcommand("user", "Accounts of the live page: add, passwd, del, token");
  user_->require_subcommand(1);
  auto common = [&](CLI::App* sub) {
    sub->add_option("NAME", name_, "User name (letters, digits, . _ -)")->required();
    sub->add_option("--users-file", users_file_,
                    "Users file (default: [serve] users_file of the config, else " +
                        std::string(kDefaultUsers) + ")");
    sub->add_option("-c,--config", config_file_, "Config file (for [serve] users_file)");
  };
  add_ = user_->add_subcommand("add",
                               "Add a user; the password is read from the terminal "
                               "(no echo) or one line of standard input");
  common(add_);
  add_->add_option("--role", role_, "viewer (look) or operator (also switch relays)")
      ->default_val("viewer");
  passwd_ = user_->add_subcommand("passwd", "Set a user's password (ends its sessions)");
  common(passwd_);
  passwd_->add_option("--role", role_, "Also change the role: viewer or operator");
  del_ = user_->add_subcommand("del", "Delete a user (ends its sessions and tokens)");
  common(del_);
  token_ = user_->add_subcommand(
      "token",
      "Print a new API token for a user (Authorization: Bearer; stored hashed, shown once)");
  common(token_);
}

bool UserCommands::chosen() const { return user_ && user_->parsed(); }

int UserCommands::run() {
  if (!serve::auth::crypto_ready()) {
    std::fprintf(stderr, "libsodium cannot start (no entropy source?)\n");
    return 1;
  }
  if (!serve::valid_user_name(name_)) {
    std::fprintf(stderr, "\"%s\" is not a user name: letters, digits, . _ - (up to 64)\n",
                 name_.c_str());
    return 2;
  }
  serve::Role role = serve::Role::viewer;
  if (!role_.empty() && !serve::parse_role(role_, role)) {
    std::fprintf(stderr, "--role must be viewer or operator, not \"%s\"\n", role_.c_str());
    return 2;
  }
  const std::string path = users_file_of(users_file_, config_file_);
  serve::Users users;
  if (!load(path, users)) return 1;
  serve::User* u = users.find(name_);
  if (add_->parsed() && u) {
    std::fprintf(stderr, "user %s exists in %s (change it with `meterpipe user passwd`)\n",
                 name_.c_str(), path.c_str());
    return 2;
  }
  if (!add_->parsed() && !u) {
    std::fprintf(stderr, "no user %s in %s\n", name_.c_str(), path.c_str());
    return 2;
  }
  if (del_->parsed()) {
    std::erase_if(users.users, [&](const serve::User& x) { return x.name == name_; });
    if (!save(path, users)) return 1;
    std::fprintf(stderr, "user %s deleted from %s\n", name_.c_str(), path.c_str());
    return 0;
  }
  if (token_->parsed()) {
    const std::string token = serve::auth::new_token();
    u->token_hashes.push_back(serve::auth::token_hash(token));
    if (!save(path, users)) return 1;
    std::printf("%s\n", token.c_str());
    std::fprintf(stderr,
                 "a new API token for user %s (%s), stored hashed in %s: it is shown only "
                 "this once\n",
                 name_.c_str(), serve::role_name(u->role), path.c_str());
    return 0;
  }
  std::string pw;
  if (!new_password(name_, pw)) return 2;
  const std::string hash = serve::auth::hash_password(pw);
  if (hash.empty()) {
    std::fprintf(stderr, "cannot hash the password (out of memory?)\n");
    return 1;
  }
  if (add_->parsed()) {
    users.users.push_back(serve::User{name_, role, hash, {}});
  } else {
    u->password_hash = hash;
    if (!role_.empty()) u->role = role;
  }
  if (!save(path, users)) return 1;
  u = users.find(name_);
  std::fprintf(stderr, "user %s (%s) %s in %s\n", name_.c_str(), serve::role_name(u->role),
               add_->parsed() ? "added" : "updated", path.c_str());
  return 0;
}

}  // namespace mp::cli
