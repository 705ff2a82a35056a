// Metrics records to Events (proto/tensorboard_event.proto), one TFRecord each.
#include "train/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <filesystem>
#include <vector>

#include "core/error.h"
#include "train/png.h"
#include "train/tfrecord.h"
#include "train/tensorboard_event.pb.h"

namespace moegrad::train {

namespace pb = moegrad::tensorboard;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (gethostname(buf.data(), buf.size() - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf.data();
}

void add_scalar(pb::Summary& s, const std::string& tag, double v) {
  auto* value = s.add_value();
  value->set_tag(tag);
  value->set_simple_value(static_cast<float>(v));
}

// Expert e's tokens as the bucket (e, e + 1]: TensorBoard draws one bar per expert.
void add_load_histogram(pb::Summary& s, const std::string& tag, const std::vector<std::int64_t>& load) {
  auto* value = s.add_value();
  value->set_tag(tag);
  auto* h = value->mutable_histo();
  double num = 0, sum = 0, sum_sq = 0;
  for (std::size_t e = 0; e < load.size(); ++e) {
    const auto n = static_cast<double>(load[e]), x = static_cast<double>(e) + 0.5;  // the bucket's middle
    num += n;
    sum += n * x;
    sum_sq += n * x * x;
    h->add_bucket_limit(static_cast<double>(e + 1));
    h->add_bucket(n);
  }
  h->set_min(0);
  h->set_max(static_cast<double>(load.size()));
  h->set_num(num);
  h->set_sum(sum);
  h->set_sum_squares(sum_sq);
}

// t in [0, 1] to a dark-blue -> teal -> yellow ramp (viridis' ends and middle).
std::array<std::uint8_t, 3> ramp(double t) {
  static constexpr double kStops[3][3] = {{68, 1, 84}, {33, 145, 140}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 2;
  const int i = std::min(1, static_cast<int>(t));
  const double f = t - i;
  std::array<std::uint8_t, 3> c{};
  for (int k = 0; k < 3; ++k) c[k] = static_cast<std::uint8_t>(kStops[i][k] + f * (kStops[i + 1][k] - kStops[i][k]) + 0.5);
  return c;
}

// columns[j][e]: expert e's tokens at the j-th logged step -> PNG, experts down, steps across.
std::string heatmap_png(const std::deque<std::vector<std::int64_t>>& columns, std::int64_t experts) {
  constexpr auto ch = TensorBoardWriter::kCellHeight, cw = TensorBoardWriter::kCellWidth;
  const auto cols = static_cast<std::int64_t>(columns.size());
  const std::int64_t w = cols * cw, h = experts * ch;
  std::vector<std::uint8_t> rgb(static_cast<std::size_t>(3 * w * h));
  for (std::int64_t j = 0; j < cols; ++j) {
    const auto& load = columns[static_cast<std::size_t>(j)];
    double total = 0;
    for (const auto n : load) total += static_cast<double>(n);
    for (std::int64_t e = 0; e < experts; ++e) {
      const double share = total > 0 ? static_cast<double>(load[static_cast<std::size_t>(e)]) / total : 0;
      const auto c = ramp(share * static_cast<double>(experts) / 2);
      for (std::int64_t y = e * ch; y < (e + 1) * ch; ++y)
        for (std::int64_t x = j * cw; x < (j + 1) * cw; ++x)
          std::copy(c.begin(), c.end(), rgb.begin() + 3 * (y * w + x));
    }
  }
  return encode_png_rgb(w, h, rgb);
}

}  // namespace

struct TensorBoardWriter::Impl {
  RecordFile file;
  std::vector<std::deque<std::vector<std::int64_t>>> loads;  // per layer, the last kMaxColumns logged loads

  void write_event(const pb::Event& event) {
    std::string bytes;
    MOEGRAD_CHECK(event.SerializeToString(&bytes), "tensorboard", "cannot serialize an event for '{}'", file.path());
    file.write(bytes);
  }
};

TensorBoardWriter::TensorBoardWriter(const std::string& dir) : impl_(std::make_unique<Impl>()) {
  MOEGRAD_CHECK(!dir.empty(), "tensorboard", "--tensorboard needs a folder, got ''");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("tensorboard", "cannot create '{}': {}", dir, ec.message());
  const double t = now_s();
  const auto path = std::filesystem::path(dir) /
                    fmt::format("events.out.tfevents.{}.{}.{}.moegrad", static_cast<std::int64_t>(t), host_name(), getpid());
  impl_->file = RecordFile(path.string());
  pb::Event first;
  first.set_wall_time(t);
  first.set_file_version("brain.Event:2");
  impl_->write_event(first);
}

TensorBoardWriter::~TensorBoardWriter() = default;

const std::string& TensorBoardWriter::path() const { return impl_->file.path(); }

void TensorBoardWriter::write(const json::Json& record) {
  pb::Event event;
  event.set_wall_time(now_s());
  event.set_step(record.at("step").get<std::int64_t>());
  auto& s = *event.mutable_summary();
  for (const auto& [key, v] : record.items())
    if (key != "step" && v.is_number()) add_scalar(s, key, v.get<double>());
  const bool eval = record.contains("eval_loss");
  if (record.contains("layers")) {
    const auto& layers = record.at("layers");
    if (impl_->loads.size() < layers.size()) impl_->loads.resize(layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i) {
      const auto& layer = layers[i];
      const std::string prefix = fmt::format("moe/layer{}/", i);
      auto load = layer.at("tokens_per_expert").get<std::vector<std::int64_t>>();
      add_load_histogram(s, prefix + "expert_load", load);
      for (const auto& [key, v] : layer.items())
        if (v.is_number()) add_scalar(s, prefix + key, v.get<double>());
      auto& columns = impl_->loads[i];
      columns.push_back(std::move(load));
      if (static_cast<std::int64_t>(columns.size()) > kMaxColumns) columns.pop_front();
    }
  }
  if (eval) {
    for (std::size_t i = 0; i < impl_->loads.size(); ++i) {
      const auto& columns = impl_->loads[i];
      if (columns.empty()) continue;
      const auto experts = static_cast<std::int64_t>(columns.back().size());
      if (experts == 0 || std::any_of(columns.begin(), columns.end(),
                                      [&](const auto& c) { return static_cast<std::int64_t>(c.size()) != experts; }))
        continue;
      auto* value = s.add_value();
      value->set_tag(fmt::format("moe/layer{}/expert_load_heatmap", i));
      auto* image = value->mutable_image();
      image->set_height(static_cast<std::int32_t>(experts * kCellHeight));
      image->set_width(static_cast<std::int32_t>(static_cast<std::int64_t>(columns.size()) * kCellWidth));
      image->set_colorspace(3);
      image->set_encoded_image_string(heatmap_png(columns, experts));
    }
  }
  impl_->write_event(event);
}

}  // namespace moegrad::train
