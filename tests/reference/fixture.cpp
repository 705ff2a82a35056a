// Loading the reference fixtures, and the tolerance comparisons of the parity tests.
#include "tests/reference/fixture.h"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "core/shape.h"
#include "train/hdf5.h"

#ifndef MOEGRAD_FIXTURE_DIR
#error "MOEGRAD_FIXTURE_DIR must name tests/reference/fixtures (set in tests/CMakeLists.txt)"
#endif

namespace moegrad::test {

const core::Tensor& Fixture::at(const std::string& dataset) const {
  const auto it = data.find(dataset);
  MOEGRAD_CHECK(it != data.end(), "fixture", "'{}' has no dataset '{}'", name, dataset);
  return it->second;
}

std::string fixture_dir() { return MOEGRAD_FIXTURE_DIR; }

std::vector<std::string> fixture_names() {
  std::vector<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(fixture_dir())) {
    if (entry.is_regular_file() && entry.path().extension() == ".h5") out.push_back(entry.path().stem().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Fixture load_fixture(const std::string& name) {
  const std::string path = fixture_dir() + "/" + name + ".h5";
  MOEGRAD_CHECK(std::filesystem::exists(path), "fixture", "no fixture '{}' ({} does not exist)", name, path);
  const h5::File f = h5::File::open(path);
  Fixture fx;
  fx.name = name;
  auto attribute = [&](const char* key) {
    auto v = f.attribute_string(key);
    MOEGRAD_CHECK(v.has_value(), "fixture", "'{}' has no attribute '{}'", name, key);
    return *v;
  };
  auto json_attribute = [&](const char* key, const char* root) {
    fx.documents.push_back(std::make_shared<const json::Json>(json::parse(attribute(key), name + " " + key, "fixture")));
    return json::Node(*fx.documents.back(), "fixture", name, root);
  };
  fx.module = attribute("module");
  fx.mode = attribute("mode");
  fx.args = json_attribute("args_json", "args");
  fx.forward = json_attribute("forward_json", "forward");
  fx.loss = json_attribute("loss_json", "loss");
  fx.inputs = json_attribute("inputs_json", "inputs");
  fx.draws = json_attribute("draws_json", "draws");
  fx.outputs = json_attribute("outputs_json", "outputs");
  fx.model = h5::read_state_dict(f, "/model");
  fx.grads = h5::read_state_dict(f, "/grad");
  for (const auto& dataset : f.list("/")) fx.data.emplace(dataset, f.read(dataset));
  return fx;
}

// ---- comparisons -------------------------------------------------------------------------------

namespace {

std::string index_str(std::int64_t flat, const core::Shape& shape) {
  if (shape.empty()) return "[]";
  std::vector<std::int64_t> idx(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] ? flat % shape[d] : 0;
    flat = shape[d] ? flat / shape[d] : 0;
  }
  return fmt::format("[{}]", fmt::join(idx, ", "));
}

// Shared by both comparisons: bad(a, e) says whether a pair fails and how badly (larger is
// worse; +inf for NaN).
template <class Badness>
std::optional<std::string> compare(const std::string& label, const core::Tensor& actual, const core::Tensor& expected,
                                   const std::string& rule, Badness badness) {
  if (!actual.defined() || !expected.defined())
    return fmt::format("{}: {} tensor is undefined", label, actual.defined() ? "expected" : "actual");
  if (actual.shape() != expected.shape())
    return fmt::format("{}: shape {} vs expected {}", label, core::shape_str(actual.shape()),
                       core::shape_str(expected.shape()));
  const auto a = actual.to_vector<double>();
  const auto e = expected.to_vector<double>();
  std::int64_t bad = 0, worst = -1;
  double worst_badness = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double b = badness(a[i], e[i]);
    if (b <= 0) continue;
    ++bad;
    if (worst < 0 || b > worst_badness) {
      worst = static_cast<std::int64_t>(i);
      worst_badness = b;
    }
  }
  if (bad == 0) return std::nullopt;
  const auto w = static_cast<std::size_t>(worst);
  return fmt::format("{}: {} of {} elements differ ({}); worst at {}: actual {:.9g} vs expected {:.9g} "
                     "(|diff| {:.3g}); shape {}",
                     label, bad, a.size(), rule, index_str(worst, actual.shape()), a[w], e[w], std::abs(a[w] - e[w]),
                     core::shape_str(actual.shape()));
}

}  // namespace

std::optional<std::string> compare_close(const std::string& label, const core::Tensor& actual,
                                         const core::Tensor& expected, double rtol, double atol) {
  return compare(label, actual, expected, fmt::format("rtol {:g}, atol {:g}", rtol, atol), [&](double a, double e) {
    const double diff = std::abs(a - e), allowed = atol + rtol * std::abs(e);
    if (diff <= allowed) return 0.0;  // also false for NaN
    if (std::isnan(diff)) return std::numeric_limits<double>::infinity();
    return allowed > 0 ? diff / allowed : diff + 1.0;  // how many times over the tolerance
  });
}

std::optional<std::string> compare_equal(const std::string& label, const core::Tensor& actual,
                                         const core::Tensor& expected) {
  return compare(label, actual, expected, "exact", [](double a, double e) {
    if (a == e || (std::isnan(a) && std::isnan(e))) return 0.0;
    const double diff = std::abs(a - e);
    return std::isnan(diff) ? std::numeric_limits<double>::infinity() : diff;
  });
}

void check_close(const std::string& label, const core::Tensor& actual, const core::Tensor& expected, double rtol,
                 double atol) {
  const auto mismatch = compare_close(label, actual, expected, rtol, atol);
  CHECK_MESSAGE(!mismatch.has_value(), mismatch.value_or(""));
}

void check_equal(const std::string& label, const core::Tensor& actual, const core::Tensor& expected) {
  const auto mismatch = compare_equal(label, actual, expected);
  CHECK_MESSAGE(!mismatch.has_value(), mismatch.value_or(""));
}

}  // namespace moegrad::test
