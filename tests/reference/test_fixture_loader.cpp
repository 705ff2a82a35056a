// The fixture loader: every fixture loads through train/hdf5 and train/json_read, and its layout
// is what tests/reference/README.md documents. Also the comparison helpers' messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <string>

#include "core/ops.h"
#include "tests/reference/fixture.h"

namespace core = moegrad::core;
namespace json = moegrad::json;
namespace test = moegrad::test;
using core::Shape;
using doctest::Contains;
using moegrad::Error;

namespace {

const std::set<std::string> kModules{
    "lmoe.Experts",  "lmoe.Top2Gating",       "lmoe.MoE",      "lmoe.HeirarchicalMoE",
    "st_moe.TopNGating", "st_moe.MoE",        "st_moe.SparseMoEBlock", "st_moe.Expert",
    "zeta.Experts",  "zeta.MoERouter",        "zeta.TopNGating"};

// State entries without a gradient (st-moe's gate thresholds).
bool is_buffer(const std::string& key) {
  for (const char* suffix : {"threshold_train", "threshold_eval"}) {
    const std::string s(suffix);
    if (key.size() >= s.size() && key.compare(key.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

Shape shape_of(const json::Node& v) {
  Shape s;
  for (const auto& d : v.as_array()) s.push_back(d.as_int());
  return s;
}

}  // namespace

TEST_CASE("reference: every fixture loads, with the documented layout") {
  const auto names = test::fixture_names();
  REQUIRE(names.size() >= 3);
  for (const char* must : {"lmoe_experts", "st_expert", "zeta_experts"})
    CHECK(std::find(names.begin(), names.end(), must) != names.end());
  std::set<std::string> modules_seen;
  for (const auto& name : names) {
    CAPTURE(name);
    const test::Fixture fx = test::load_fixture(name);
    CHECK(fx.name == name);
    CHECK(kModules.count(fx.module) == 1);
    modules_seen.insert(fx.module);
    CHECK((fx.mode == "train" || fx.mode == "eval"));
    CHECK(fx.args.is_object());
    CHECK(fx.forward.is_object());
    CHECK(fx.loss.is_object());
    CHECK(fx.args.path() == "args");

    // Inputs, draws and outputs are root datasets.
    REQUIRE(fx.has("x"));
    REQUIRE(fx.has("grad_output"));
    for (const auto& input : fx.inputs.as_array()) CHECK(fx.has(input.as_string()));
    for (const auto& output : fx.outputs.as_array()) CHECK(fx.has(output.as_string()));
    for (const auto& draw : fx.draws.as_array()) {
      const std::string d = draw.at(0).as_string();
      REQUIRE(fx.has(d));
      CHECK(fx.at(d).shape() == shape_of(draw.at(2)));
    }
    const std::string primary = fx.loss.at("primary").as_string();
    REQUIRE(fx.has(primary));
    CHECK(fx.at("grad_output").shape() == fx.at(primary).shape());
    for (const auto& [key, t] : fx.data) CHECK(t.dtype() == core::DType::f32);

    // Every parameter has a gradient of its shape; buffers have none; grads hold x.
    REQUIRE(!fx.model.empty());
    REQUIRE(fx.grads.contains("x"));
    CHECK(fx.grads.at("x").shape() == fx.at("x").shape());
    for (const auto& [key, value] : fx.model) {
      CAPTURE(key);
      CHECK(value.dtype() == core::DType::f32);
      if (is_buffer(key)) {
        CHECK(!fx.grads.contains(key));
      } else {
        REQUIRE(fx.grads.contains(key));
        CHECK(fx.grads.at(key).shape() == value.shape());
      }
    }
    for (const auto& [key, value] : fx.grads) {
      CAPTURE(key);
      CHECK((key == "x" || fx.model.contains(key)));
    }
    // Keys come in sorted order.
    const auto keys = fx.model.keys();
    CHECK(std::is_sorted(keys.begin(), keys.end()));
  }
  CHECK(modules_seen == kModules);  // every module has at least one fixture
}

TEST_CASE("reference: fixture errors name the fixture") {
  CHECK_THROWS_WITH_AS(test::load_fixture("no_such_fixture"), Contains("[fixture] no fixture 'no_such_fixture'"),
                       Error);
  const test::Fixture fx = test::load_fixture("st_expert");
  CHECK(fx.module == "st_moe.Expert");
  CHECK(fx.args.at("dim").as_int() == 16);
  CHECK_THROWS_WITH_AS(fx.at("combine"), "[fixture] 'st_expert' has no dataset 'combine'", Error);
  CHECK_THROWS_WITH_AS(fx.args.at("dim").as_string(), "[fixture] 'st_expert': 'args.dim': expected a string, got 16", Error);
  CHECK_THROWS_WITH_AS(fx.grads.at("nope"), Contains("nope"), Error);
}

TEST_CASE("reference: compare_close and compare_equal describe the worst element") {
  const auto a = core::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(!test::compare_close("t", a, a, 0, 0).has_value());
  CHECK(!test::compare_equal("t", a, a).has_value());
  // Within tolerance: |diff| <= atol + rtol * |e|.
  const auto near = core::from_vector<float>({1, 2, 3, 4, 5, 6.0000005f}, {2, 3});
  CHECK(!test::compare_close("t", near, a, 1e-6, 0).has_value());
  CHECK(test::compare_equal("t", near, a).has_value());
  // Two bad elements; the worst (relative to its tolerance) is [1, 0].
  const auto off = core::from_vector<float>({1, 2.001f, 3, 4.5f, 5, 6}, {2, 3});
  const auto m = test::compare_close("grad/w", off, a, 1e-5, 1e-6);
  REQUIRE(m.has_value());
  CHECK(*m == "grad/w: 2 of 6 elements differ (rtol 1e-05, atol 1e-06); worst at [1, 0]: actual 4.5 vs expected 4 "
              "(|diff| 0.5); shape (2, 3)");
  CHECK(test::compare_close("x", core::zeros({2, 3}), core::zeros({3, 2}), 1, 1) ==
        std::optional<std::string>("x: shape (2, 3) vs expected (3, 2)"));
  CHECK(test::compare_close("x", core::Tensor(), a, 1, 1) == std::optional<std::string>("x: actual tensor is undefined"));
  // NaN never passes; exact comparison across dtypes compares values.
  const auto nan = core::from_vector<float>({1, 2, 3, 4, 5, NAN}, {2, 3});
  CHECK(test::compare_close("n", nan, a, 1, 1).value_or("").find("worst at [1, 2]: actual nan") != std::string::npos);
  const auto idx = core::from_vector<std::int64_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(!test::compare_equal("i", idx, a).has_value());
  CHECK(test::compare_equal("i", core::from_vector<std::int64_t>({1, 2, 3, 4, 5, 7}, {2, 3}), a).value_or("") ==
        "i: 1 of 6 elements differ (exact); worst at [1, 2]: actual 7 vs expected 6 (|diff| 1); shape (2, 3)");
  // 0-d tensors and non-contiguous views.
  CHECK(!test::compare_equal("s", core::scalar_tensor(2.0), core::scalar_tensor(2.0, {core::DType::f32})).has_value());
  CHECK(!test::compare_equal("v", core::transpose(a, 0, 1),
                             core::from_vector<float>({1, 4, 2, 5, 3, 6}, {3, 2}))
             .has_value());
  test::check_close("check_close passes", near, a, 1e-6, 0);
  test::check_equal("check_equal passes", a, a);
}
