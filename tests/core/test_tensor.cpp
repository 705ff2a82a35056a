// Tensor handle, creation, views and copies.
#include <doctest/doctest.h>

#include "core/ops.h"

using namespace moegrad::core;
using doctest::Contains;
using moegrad::Error;

namespace {
std::vector<float> vals(const Tensor& t) { return t.to_vector<float>(); }
Tensor iota(const Shape& s) { return to_dtype(reshape(arange(shape_numel(s)), s), DType::f32); }
}  // namespace

TEST_CASE("tensor: creation and metadata") {
  Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Shape{3, 1});
  CHECK(z.numel() == 6);
  CHECK(z.dtype() == DType::f32);
  CHECK(z.device() == Device::cpu());
  CHECK(z.is_contiguous());
  CHECK(vals(z) == std::vector<float>(6, 0.f));
  CHECK(vals(ones({2})) == std::vector<float>{1, 1});
  CHECK(full({2}, 2.5, {DType::f64}).to_vector<double>() == std::vector<double>{2.5, 2.5});
  CHECK(arange(5).to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1.0, 2.0, 0.25, {DType::f32}).to_vector<float>() == std::vector<float>{1, 1.25, 1.5, 1.75});
  CHECK(scalar_tensor(3.0).dim() == 0);
  CHECK(scalar_tensor(3.0).item<float>() == 3.f);
  Tensor b = from_vector<bool>({true, false}, {2});
  CHECK(b.dtype() == DType::b8);
  CHECK(b.to_vector<int>() == std::vector<int>{1, 0});
  CHECK(zeros({0, 3}).numel() == 0);
  CHECK(Device::parse("cuda:1") == Device::cuda(1));
  CHECK(Device::parse("cpu").str() == "cpu");
  CHECK(iota({2, 2}).to_string().find("(2, 2), f32, cpu") != std::string::npos);
}

TEST_CASE("tensor: views share storage") {
  Tensor x = iota({2, 3, 4});
  Tensor t = transpose(x, 0, 2);
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.storage() == x.storage());
  CHECK_FALSE(t.is_contiguous());
  CHECK(vals(select(select(t, 0, 1), 1, 1)) == std::vector<float>{13, 17, 21});  // x[1][j][1]

  Tensor p = permute(x, {1, 2, 0});
  CHECK(p.shape() == Shape{3, 4, 2});
  CHECK(vals(select(select(p, 0, 2), 0, 3)) == std::vector<float>{11, 23});

  Tensor n = narrow(x, 2, 1, 2);
  CHECK(n.shape() == Shape{2, 3, 2});
  CHECK(n.offset() == 1);
  CHECK(vals(select(select(n, 0, 0), 0, 0)) == std::vector<float>{1, 2});

  Tensor s = slice(iota({10}), 0, 1, 8, 3);
  CHECK(vals(s) == std::vector<float>{1, 4, 7});
  CHECK(vals(slice(iota({10}), 0, -3, 100)) == std::vector<float>{7, 8, 9});

  Tensor e = expand(from_vector<float>({1, 2, 3}, {3, 1}), {2, 3, 4});
  CHECK(e.strides() == Shape{0, 1, 0});
  CHECK(vals(sum(e)) == std::vector<float>{48});

  CHECK(unsqueeze(iota({2, 3}), 1).shape() == Shape{2, 1, 3});
  CHECK(unsqueeze(iota({2, 3}), -1).shape() == Shape{2, 3, 1});
  CHECK(squeeze(zeros({1, 2, 1})).shape() == Shape{2});
  CHECK(squeeze(zeros({1, 2, 1}), 1).shape() == Shape{1, 2, 1});
  CHECK(flatten(zeros({2, 3, 4}), 1).shape() == Shape{2, 12});
}

TEST_CASE("tensor: reshape views when it can and copies when it must") {
  Tensor x = iota({2, 3, 4});
  Tensor r = reshape(x, {6, -1});
  CHECK(r.shape() == Shape{6, 4});
  CHECK(r.storage() == x.storage());
  Tensor t = transpose(x, 1, 2);  // [2, 4, 3], not viewable as [24]
  CHECK_THROWS_WITH_AS(view(t, {24}), Contains("[view] cannot view f32(2, 4, 3)"), Error);
  Tensor flat = reshape(t, {24});
  CHECK(flat.storage() != x.storage());
  CHECK(vals(flat)[1] == 4.f);
  CHECK(view(narrow(x, 0, 1, 1), {12}).offset() == 12);  // a sliced leading dim still views
  CHECK(reshape(scalar_tensor(1.0), {1, 1}).shape() == Shape{1, 1});
}

TEST_CASE("tensor: contiguous, clone, copy_ and dtype conversion") {
  Tensor x = iota({3, 4});
  Tensor t = transpose(x, 0, 1);
  Tensor c = contiguous(t);
  CHECK(c.is_contiguous());
  CHECK(vals(c) == std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(contiguous(x).storage() == x.storage());
  CHECK(clone(x).storage() != x.storage());

  Tensor d = zeros({2, 3}, {DType::f64});
  copy_(d, from_vector<std::int64_t>({1, 2, 3}, {3}));  // broadcast + convert
  CHECK(d.to_vector<double>() == std::vector<double>{1, 2, 3, 1, 2, 3});
  CHECK(to_dtype(from_vector<float>({1.7f, -1.7f}), DType::i64).to_vector<std::int64_t>() ==
        std::vector<std::int64_t>{1, -1});
  CHECK(to_dtype(from_vector<float>({0.f, 2.f}), DType::b8).to_vector<int>() == std::vector<int>{0, 1});
  Tensor f = zeros({4});
  fill_(narrow(f, 0, 1, 2), 7.0);
  CHECK(vals(f) == std::vector<float>{0, 7, 7, 0});
}

TEST_CASE("tensor: large strided copies use the parallel path and stay exact") {
  Tensor x = iota({300, 257});
  Tensor y = contiguous(transpose(x, 0, 1));
  const auto v = vals(y);
  CHECK(v[1] == 257.f);
  CHECK(v[257 * 300 - 1] == 300.f * 257 - 1);
  CHECK(vals(sum(y))[0] == doctest::Approx(vals(sum(x))[0]));
}

TEST_CASE("tensor: errors name the op and the shapes") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH_AS(reshape(x, {4, 2}), Contains("[reshape] shape (4, 2) is invalid for f32(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(reshape(x, {-1, -1}), Contains("[reshape] only one dim may be -1"), Error);
  CHECK_THROWS_WITH_AS(permute(x, {0, 0}), Contains("[permute] repeated dim"), Error);
  CHECK_THROWS_WITH_AS(transpose(x, 0, 2), Contains("[transpose] dim 2 out of range for shape (2, 3)"), Error);
  CHECK_THROWS_WITH_AS(narrow(x, 1, 2, 2), Contains("[narrow] range [2, 4) out of bounds for dim 1 of f32(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(select(x, 0, 2), Contains("[select] index 2 out of range"), Error);
  CHECK_THROWS_WITH_AS(expand(x, {2, 4}), Contains("[expand] cannot expand f32(2, 3) to (2, 4)"), Error);
  CHECK_THROWS_WITH_AS(slice(x, 0, 0, 1, 0), Contains("[slice] step must be positive"), Error);
  CHECK_THROWS_WITH_AS(as_strided(x, {3, 3}, {3, 1}, 0), Contains("[as_strided]"), Error);
  CHECK_THROWS_WITH_AS(x.item<float>(), Contains("[item] needs exactly one element, got f32(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(x.data<double>(), Contains("[data] asked for f64 data of a f32(2, 3) tensor"), Error);
  CHECK_THROWS_WITH_AS(from_vector<float>({1, 2, 3}, {2, 2}), Contains("[from_vector] 3 values do not fill shape (2, 2)"), Error);
  CHECK_THROWS_WITH_AS(zeros({-1}), Contains("[zeros] negative size"), Error);
  CHECK_THROWS_WITH_AS(Device::parse("gpu"), Contains("[device] unknown device 'gpu'"), Error);
  CHECK_THROWS_WITH_AS(add(Tensor{}, x), Contains("[add] input tensor is undefined"), Error);
  CHECK_THROWS_WITH_AS(copy_(zeros({2, 3}), zeros({3, 2})), Contains("[expand] cannot expand f32(3, 2) to (2, 3)"), Error);
}

TEST_CASE("tensor: cuda device without a GPU gives a clear error") {
  if (moegrad::core::Device::cuda(0) == Device::cpu()) return;
  // On a machine without a usable GPU (CI), moving a tensor there must throw, not crash.
  try {
    Tensor g = to_device(zeros({2}), Device::cuda(0));
    // A GPU is present: the tensor came back intact, and ops refuse mixed devices.
    CHECK(to_device(g, Device::cpu()).to_vector<float>() == std::vector<float>{0, 0});
    CHECK_THROWS_WITH_AS(add(g, zeros({2})), Contains("[add] tensors on different devices: f32(2,) cuda:0 vs f32(2,) cpu"), Error);
  } catch (const Error& e) {
    CHECK(std::string(e.what()).rfind("[cuda]", 0) == 0);
  }
}
