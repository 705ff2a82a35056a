// train/config: one option table gives the flags and the config keys the same checks (kind,
// exact integers, finite numbers, ranges, choices), the default warmup fits every --steps, and
// the checks across options hold.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "train/config.h"
#include "tests/test_files.h"

namespace json = moegrad::json;
namespace train = moegrad::train;
using doctest::Contains;
using moegrad::Error;
using train::TrainConfig;

namespace {

using moegrad::test::error_of;

std::string flag_error(const std::string& key, const std::string& text) {
  return error_of([&] { TrainConfig::option_value(key, text); });
}

std::string file_error(const std::string& text) {
  return error_of([&] { TrainConfig::from_json(json::parse(text), "run.json"); });
}

}  // namespace

TEST_CASE("config: flag texts are read exactly and checked against the option's range") {
  CHECK(TrainConfig::option_value("steps", "1e3") == 1000);
  CHECK(TrainConfig::option_value("steps", "250") == 250);
  CHECK(TrainConfig::option_value("lr", "0.02") == 0.02);
  CHECK(TrainConfig::option_value("seed", "18446744073709551615") == 18446744073709551615ULL);
  CHECK(TrainConfig::option_value("model", "dense") == "dense");
  CHECK(TrainConfig::option_value("progress", "false") == false);
  CHECK(flag_error("steps", "abc") == "[config] --steps needs an integer, got 'abc'");
  CHECK(flag_error("steps", "1.5") == "[config] --steps needs an integer, got '1.5'");
  CHECK(flag_error("steps", "0") == "[config] --steps must be >= 1, got 0");
  CHECK(flag_error("steps", " 5") == "[config] --steps needs an integer, got ' 5'");
  CHECK(flag_error("keep_last", "4294967297") == "[config] --keep-last must be <= 1000000, got 4294967297");
  CHECK(flag_error("keep_last", "2147483648") == "[config] --keep-last must be <= 1000000, got 2147483648");
  CHECK(flag_error("batch_size", "9223372036854775807") == "[config] --batch-size must be <= 1099511627776, got 9223372036854775807");
  CHECK(flag_error("batch_size", "9223372036854775808") ==
        "[config] --batch-size must be in [-9223372036854775808, 9223372036854775807], got 9223372036854775808");
  CHECK(flag_error("capacity_factor", "inf") == "[config] --capacity-factor must be a finite number, got inf");
  CHECK(flag_error("capacity_factor", "nan") == "[config] --capacity-factor must be a finite number, got nan");
  CHECK(flag_error("capacity_factor", "1e300") == "[config] --capacity-factor must be <= 1e+06, got 1e+300");
  CHECK(flag_error("capacity_factor", "1e999") == "[config] --capacity-factor must be a finite number, got inf");
  CHECK(flag_error("capacity_factor", "0") == "[config] --capacity-factor must be > 0, got 0");
  CHECK(flag_error("balance_loss_coef", "-1") == "[config] --balance-loss-coef must be >= 0, got -1");
  CHECK(flag_error("router_z_loss_coef", "-1e-9") == "[config] --router-z-loss-coef must be >= 0, got -1e-09");
  CHECK(flag_error("noise_mult", "1e300") == "[config] --noise-mult must be <= 1e+06, got 1e+300");
  CHECK(flag_error("momentum", "1") == "[config] --momentum must be < 1, got 1");
  CHECK(flag_error("seed", "-3") == "[config] --seed must be in [0, 18446744073709551615], got -3");
  CHECK(flag_error("model", "sparse") == "[config] --model must be one of st_moe, lucidrains, hierarchical, dense; got 'sparse'");
  CHECK(flag_error("device", "tpu") == "[config] --device must be cpu, cuda or cuda:N, got 'tpu'");
  CHECK(flag_error("no_such", "1") == "[config] unknown option 'no_such'");
}

TEST_CASE("config: a config-file value gets the same checks as the flag, naming the file and the key") {
  CHECK(file_error(R"({"steps": 0})") == "[config] 'run.json': 'steps': must be >= 1, got 0");
  CHECK(file_error(R"({"steps": 1.5})") == "[config] 'run.json': 'steps': expected an integer, got 1.5");
  CHECK(file_error(R"({"steps": "10"})") == "[config] 'run.json': 'steps': expected an integer, got a string");
  CHECK(file_error(R"({"keep_last": 4294967297})") == "[config] 'run.json': 'keep_last': must be <= 1000000, got 4294967297");
  CHECK(file_error(R"({"capacity_factor": 1e300})") == "[config] 'run.json': 'capacity_factor': must be <= 1e+06, got 1e+300");
  CHECK(file_error(R"({"seed": -1})") == "[config] 'run.json': 'seed': must be >= 0, got -1");
  CHECK(file_error(R"({"progress": 1})") == "[config] 'run.json': 'progress': expected a boolean, got 1");
  CHECK(file_error(R"({"stepz": 1})") == "[config] 'run.json': unknown key 'stepz' (keys are the flags' names with '_' for '-')");
  CHECK(file_error("[]") == "[config] 'run.json': a configuration must be a JSON object, got an array");
  CHECK(TrainConfig::from_json(json::parse(R"({"steps": 1e3})")).steps == 1000);
}

TEST_CASE("config: the default warmup fits every --steps; checks across options") {
  for (std::int64_t steps : {1, 5, 10, 199, 200, 1000, 999999999}) {
    CAPTURE(steps);
    const TrainConfig c = TrainConfig::from_json(json::Json{{"steps", steps}});
    CHECK(c.warmup == std::min<std::int64_t>(20, steps / 10));
  }
  CHECK(TrainConfig::from_json(json::Json{{"steps", 10}, {"warmup", 10}}).warmup == 10);  // given: kept
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(json::Json{{"steps", 10}, {"warmup", 11}}),
                       "[config] --warmup must be <= --steps = 10, got 11", Error);
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(json::Json{{"lr", 0.01}, {"min_lr", 0.1}}),
                       "[config] --min-lr must be <= --lr = 0.01, got 0.1", Error);
  CHECK_THROWS_WITH_AS(TrainConfig::from_json(json::Json{{"model", "lucidrains"}, {"noise_gates", true}}),
                       Contains("--noise-gates needs --model st_moe"), Error);
  // validate() applies the table's ranges to a configuration built in code.
  TrainConfig c;
  c.model.capacity_factor = 1e300;
  CHECK_THROWS_WITH_AS(c.validate(), "[config] --capacity-factor must be <= 1e+06, got 1e+300", Error);
  c = {};
  c.keep_last = 4294967297;
  CHECK_THROWS_WITH_AS(c.validate(), "[config] --keep-last must be <= 1000000, got 4294967297", Error);
}

TEST_CASE("config: every option of the table is a flag and a key, with its range for --help") {
  const auto& options = TrainConfig::options();
  const json::Json all = TrainConfig{}.to_json();
  REQUIRE(options.size() == all.size());
  std::size_t i = 0;
  for (const auto& [key, value] : all.items()) {
    CAPTURE(key);
    CHECK(options[i].key == key);
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    CHECK(options[i].flag == flag);
    ++i;
  }
  auto find = [&](const std::string& key) {
    for (const auto& o : options)
      if (o.key == key) return o;
    FAIL("no option ", key);
    return options.front();
  };
  CHECK(find("batch_size").flag == "--batch-size");
  CHECK(find("steps").range == "[1, 999999999]");
  CHECK(find("capacity_factor").range == "(0, 1e+06]");
  CHECK(find("model").range == "st_moe|lucidrains|hierarchical|dense");
  CHECK(find("warmup").default_value == "min(20, steps/10)");
  CHECK(find("lr").default_value == "0.003");
  CHECK(find("progress").kind == TrainConfig::Option::Kind::boolean);
}
