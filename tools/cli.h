// The command-line conventions of moegrad's programs (the moegrad subcommands and the
// examples), on CLI11: `--flag value` and `--flag=value`, a generated --help, and every error
// one line "<program>: <message>" on stderr. Exit codes: 0 done (and --help), 2 a usage error
// (an unknown flag, a value of the wrong kind or out of its range, a bad --config file), 1 an
// error while running.
//
//   CLI::App app{"Trains ...", "moegrad train"};
//   std::int64_t steps = 100;
//   cli::add_integer(app, "--steps", steps, 1, 1000000, "optimizer steps");
//   return cli::run(app, argc, argv, [&] { ...; return 0; });
#pragma once
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "train/config.h"

namespace moegrad::cli {

// Thrown by a body for a mistake in the command line found after parsing (exit 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A library message on one line: newlines become "; ".
inline std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  std::string out;
  for (char c : s) out += c == '\n' ? std::string("; ") : std::string(1, c);
  return out;
}

// A comma-separated flag value, piece by piece as written: "a,,b" -> {"a", "", "b"}, "" -> {""}
// (each caller decides what an empty piece means).
inline std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> parts;
  for (std::size_t p = 0; p <= text.size();) {
    const std::size_t q = std::min(text.find(',', p), text.size());
    parts.push_back(text.substr(p, q - p));
    p = q + 1;
  }
  return parts;
}

// "[config] --steps must be >= 1, got 0" -> "--steps must be >= 1, got 0".
inline std::string without_op(const std::string& s) {
  if (!s.empty() && s.front() == '[')
    if (auto p = s.find("] "); p != std::string::npos) return s.substr(p + 2);
  return s;
}

// CLI11's messages, shortened to ours.
inline std::string parse_message(const CLI::ParseError& e) {
  std::string m = one_line(e.what());
  if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
    std::string arg = m.substr(m.find(": ") == std::string::npos ? 0 : m.find(": ") + 2);
    if (auto sp = arg.find(' '); sp != std::string::npos) arg.resize(sp);
    return arg.rfind('-', 0) == 0 ? fmt::format("unknown option '{}'", arg) : fmt::format("unexpected argument '{}'", arg);
  }
  // "--steps: --steps must be ..." (our validators name the flag themselves)
  if (auto p = m.find(": "); p != std::string::npos && m.compare(p + 2, 2, "--") == 0) return m.substr(p + 2);
  if (m.find(" required ") != std::string::npos && m.find(" missing") != std::string::npos)
    return m.substr(0, m.find(':')) + " needs a value";
  if (m.find("At Most 1 required but received") != std::string::npos) return m.substr(0, m.find(':')) + " is given twice";
  // Switches take no value (CLI11 2.1 would abort on --switch=maybe without disable_flag_override).
  if (auto p = m.find(" was given a disallowed flag override"); p != std::string::npos)
    return fmt::format("--{} takes no value", m.substr(0, p));
  return m;
}

// Parses argv into app and runs body. --help prints the help on stdout (0): help() when given,
// else CLI11's generated help.
inline int run(CLI::App& app, int argc, char** argv, const std::function<int()>& body,
               const std::function<std::string()>& help = {}) {
  const std::string name = app.get_name();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    fmt::print("{}", help ? help() : app.help());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::string message = parse_message(e);
    // CLI11 checks requirements before extras; an unknown option explains the mistake better
    // ("inspect --bogus" is about --bogus, not the missing CKPT.h5).
    if (dynamic_cast<const CLI::RequiredError*>(&e))
      for (const std::string& arg : app.remaining())
        if (arg.rfind('-', 0) == 0) {
          message = fmt::format("unknown option '{}'", arg);
          break;
        }
    fmt::print(stderr, "{}: {} (see {} --help)\n", name, message, name);
    return 2;
  } catch (const std::exception& e) {  // a conversion inside CLI11 or an option's callback
    fmt::print(stderr, "{}: {} (see {} --help)\n", name, without_op(one_line(e.what())), name);
    return 2;
  }
  try {
    return body();
  } catch (const UsageError& e) {
    fmt::print(stderr, "{}: {}\n", name, one_line(e.what()));
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}: {}\n", name, one_line(e.what()));
    return 1;
  }
}

// A validator that runs check(text) and reports its moegrad::Error as the message.
template <class Check>
CLI::Validator checked_by(Check check, std::string description) {
  return CLI::Validator(
      [check](std::string& text) {
        try {
          check(text);
          return std::string();
        } catch (const std::exception& e) {
          return without_op(e.what());
        }
      },
      std::move(description));
}

inline std::string with_default(const std::string& help, const std::string& value) {
  return fmt::format("{} (default {})", help, value);
}

// An integer flag within [lo, hi] ("1e3" is 1000; "1.5" and values out of range are usage errors).
inline CLI::Option* add_integer(CLI::App& app, const std::string& flag, std::int64_t& target, std::int64_t lo,
                                std::int64_t hi, const std::string& help) {
  auto parse = [flag, lo, hi](const std::string& text) { return train::parse_integer(flag, text, lo, hi); };
  return app
      .add_option_function<std::string>(flag, [&target, parse](const std::string& t) { target = parse(t); },
                                        with_default(help, std::to_string(target)))
      ->check(checked_by(parse, fmt::format("in [{}, {}]", lo, hi)))
      ->type_name("INT");
}

// A finite number flag within [lo, hi].
inline CLI::Option* add_number(CLI::App& app, const std::string& flag, double& target, double lo, double hi,
                               const std::string& help) {
  auto parse = [flag, lo, hi](const std::string& text) { return train::parse_number(flag, text, lo, hi); };
  return app
      .add_option_function<std::string>(flag, [&target, parse](const std::string& t) { target = parse(t); },
                                        with_default(help, fmt::format("{:g}", target)))
      ->check(checked_by(parse, fmt::format("in [{:g}, {:g}]", lo, hi)))
      ->type_name("X");
}

}  // namespace moegrad::cli
