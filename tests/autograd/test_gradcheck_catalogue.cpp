// The gradient-check catalogue: one entry per differentiable op (each a CTest test).
// The last case fails if an op registered in autograd has no entry here.
#include <cmath>
#include <set>
#include <vector>

#include "dist/autograd_collectives.h"
#include "dist/local_group.h"
#include "tests/autograd/gradcheck.h"

namespace ag = moegrad::ag;
using gradcheck::check;
using gradcheck::Domain;
using gradcheck::Input;
using gradcheck::Layout;
using gradcheck::on;
using V = std::vector<ag::Variable>;

namespace {
Input I(moegrad::core::Shape s, Domain d = Domain::any) { return {std::move(s), Layout::contiguous, d}; }
Input T(moegrad::core::Shape s, Domain d = Domain::any) { return {std::move(s), Layout::transposed, d}; }
Input S(moegrad::core::Shape s, Domain d = Domain::any) { return {std::move(s), Layout::strided, d}; }

// Binary broadcasting ops share one set of cases.
template <class F>
void binary_cases(F f, Domain da = Domain::any, Domain db = Domain::any) {
  auto fn = [f](const V& v) { return f(v[0], v[1]); };
  check("same shape", fn, {I({3, 4}, da), I({3, 4}, db)});
  check("broadcast trailing", fn, {I({2, 3, 4}, da), I({4}, db)});
  check("broadcast both", fn, {I({3, 1}, da), I({1, 4}, db)});
  check("broadcast leading lhs", fn, {I({4}, da), I({2, 3, 4}, db)});
  check("non-contiguous", fn, {T({3, 4}, da), S({3, 4}, db)});
  check("0-d rhs", fn, {I({2, 3}, da), I({}, db)});
}

template <class F>
void unary_cases(F f, Domain d = Domain::any) {
  auto fn = [f](const V& v) { return f(v[0]); };
  check("1-d", fn, {I({7}, d)});
  check("3-d", fn, {I({2, 3, 4}, d)});
  check("transposed", fn, {T({3, 5}, d)});
  check("strided", fn, {S({4, 3}, d)});
  check("0-d", fn, {I({}, d)});
}
}  // namespace

// ---- arithmetic ------------------------------------------------------------------------------
GRADCHECK("add") { binary_cases([](auto a, auto b) { return ag::add(a, b); }); }
GRADCHECK("sub") { binary_cases([](auto a, auto b) { return ag::sub(a, b); }); }
GRADCHECK("mul") { binary_cases([](auto a, auto b) { return ag::mul(a, b); }); }
GRADCHECK("div") { binary_cases([](auto a, auto b) { return ag::div(a, b); }, Domain::any, Domain::away_from_zero); }
GRADCHECK("pow") {
  binary_cases([](auto a, auto b) { return ag::pow(a, b); }, Domain::positive, Domain::any);
  check("scalar exponent 2.5", [](const V& v) { return ag::pow(v[0], 2.5); }, {I({3, 4}, Domain::positive)});
  check("scalar exponent 3", [](const V& v) { return ag::pow(v[0], 3.0); }, {T({3, 4})});
}
GRADCHECK("maximum") { binary_cases([](auto a, auto b) { return ag::maximum(a, b); }); }
GRADCHECK("minimum") { binary_cases([](auto a, auto b) { return ag::minimum(a, b); }); }
GRADCHECK("where") {
  const auto cond = moegrad::core::gt(moegrad::core::from_vector<double>({1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6}, {3, 4}), 0.0);
  check("same shape", [cond](const V& v) { return ag::where(on(cond, v[0]), v[0], v[1]); }, {I({3, 4}), I({3, 4})});
  check("broadcast", [cond](const V& v) { return ag::where(on(cond, v[0]), v[0], v[1]); }, {I({4}), T({3, 4})});
  check("scalar branch", [cond](const V& v) { return ag::where(on(cond, v[0]), v[0], v[1]); }, {S({3, 4}), I({})});
}
GRADCHECK("clamp") {  // bounds kept off the ramp values of Domain::distinct
  check("two-sided", [](const V& v) { return ag::clamp(v[0], -0.42, 0.53); }, {I({4, 5}, Domain::distinct)});
  check("lower only", [](const V& v) { return ag::clamp(v[0], -0.42, INFINITY); }, {T({4, 5}, Domain::distinct)});
}

// ---- unary -----------------------------------------------------------------------------------
GRADCHECK("neg") { unary_cases([](auto x) { return ag::neg(x); }); }
GRADCHECK("exp") { unary_cases([](auto x) { return ag::exp(x); }); }
GRADCHECK("log") { unary_cases([](auto x) { return ag::log(x); }, Domain::positive); }
GRADCHECK("sqrt") { unary_cases([](auto x) { return ag::sqrt(x); }, Domain::positive); }
GRADCHECK("rsqrt") { unary_cases([](auto x) { return ag::rsqrt(x); }, Domain::positive); }
GRADCHECK("abs") { unary_cases([](auto x) { return ag::abs(x); }, Domain::away_from_zero); }
GRADCHECK("square") { unary_cases([](auto x) { return ag::square(x); }); }
GRADCHECK("tanh") { unary_cases([](auto x) { return ag::tanh(x); }); }
GRADCHECK("sigmoid") { unary_cases([](auto x) { return ag::sigmoid(x); }); }
GRADCHECK("relu") { unary_cases([](auto x) { return ag::relu(x); }, Domain::away_from_zero); }
GRADCHECK("geglu") {
  auto fn = [](const V& v) { return ag::geglu(v[0], v[1]); };
  check("same shape", fn, {I({3, 8}), I({3, 4})});
  check("broadcast mult", fn, {I({2, 3, 8}), I({4})});
  check("non-contiguous", fn, {T({3, 8}), S({3, 4})});
}
GRADCHECK("leaky_relu") {
  unary_cases([](auto x) { return ag::leaky_relu(x); }, Domain::away_from_zero);
  check("slope 0.2", [](const V& v) { return ag::leaky_relu(v[0], 0.2); }, {I({3, 4}, Domain::away_from_zero)});
}
GRADCHECK("gelu") { unary_cases([](auto x) { return ag::gelu(ag::mul(x, 3.0)); }); }
GRADCHECK("gelu_tanh") { unary_cases([](auto x) { return ag::gelu_tanh(ag::mul(x, 3.0)); }); }
GRADCHECK("silu") { unary_cases([](auto x) { return ag::silu(ag::mul(x, 3.0)); }); }

// ---- reductions ------------------------------------------------------------------------------
GRADCHECK("sum") {
  check("all", [](const V& v) { return ag::sum(v[0]); }, {I({3, 4})});
  check("dim 0", [](const V& v) { return ag::sum(v[0], {0}); }, {T({3, 4})});
  check("dim -1 keepdim", [](const V& v) { return ag::sum(v[0], {-1}, true); }, {I({2, 3, 4})});
  check("dims 0,2", [](const V& v) { return ag::sum(v[0], {0, 2}); }, {S({2, 3, 4})});
}
GRADCHECK("mean") {
  check("all", [](const V& v) { return ag::mean(v[0]); }, {I({3, 4})});
  check("dim 1", [](const V& v) { return ag::mean(v[0], {1}); }, {T({3, 4})});
  check("dims 0,-1 keepdim", [](const V& v) { return ag::mean(v[0], {0, -1}, true); }, {I({2, 3, 4})});
}
GRADCHECK("amax") {
  check("all", [](const V& v) { return ag::amax(v[0]); }, {I({3, 4}, Domain::distinct)});
  check("dim 1", [](const V& v) { return ag::amax(v[0], {1}); }, {T({3, 4}, Domain::distinct)});
  check("dims 0,2 keepdim", [](const V& v) { return ag::amax(v[0], {0, 2}, true); }, {I({2, 3, 4}, Domain::distinct)});
}
GRADCHECK("amin") {
  check("all", [](const V& v) { return ag::amin(v[0]); }, {I({3, 4}, Domain::distinct)});
  check("dim 0", [](const V& v) { return ag::amin(v[0], {0}); }, {S({3, 4}, Domain::distinct)});
}
GRADCHECK("max") {
  check("dim 1", [](const V& v) { return ag::max(v[0], 1).values; }, {I({3, 4}, Domain::distinct)});
  check("dim 0 keepdim", [](const V& v) { return ag::max(v[0], 0, true).values; }, {T({3, 4}, Domain::distinct)});
}
GRADCHECK("min") {
  check("dim -1", [](const V& v) { return ag::min(v[0], -1).values; }, {I({2, 3, 4}, Domain::distinct)});
  check("dim 0", [](const V& v) { return ag::min(v[0], 0).values; }, {S({3, 4}, Domain::distinct)});
}
GRADCHECK("logsumexp") {
  check("dim -1", [](const V& v) { return ag::logsumexp(v[0], {-1}); }, {I({3, 5})});
  check("dims 0,1 keepdim", [](const V& v) { return ag::logsumexp(v[0], {0, 1}, true); }, {T({3, 4})});
  check("large values", [](const V& v) { return ag::logsumexp(ag::mul(v[0], 50.0), {1}); }, {I({2, 4})});
}
GRADCHECK("norm") {
  check("p=2 all", [](const V& v) { return ag::norm(v[0]); }, {I({3, 4})});
  check("p=2 dim -1", [](const V& v) { return ag::norm(v[0], 2.0, {-1}); }, {T({3, 4})});
  check("p=3 dim 0 keepdim", [](const V& v) { return ag::norm(v[0], 3.0, {0}, true); }, {I({3, 4}, Domain::away_from_zero)});
  check("p=1", [](const V& v) { return ag::norm(v[0], 1.0, {1}); }, {S({3, 4}, Domain::away_from_zero)});
}
GRADCHECK("rms_norm") {
  auto rms = [](double scale, double eps) {
    return [scale, eps](const V& v) { return ag::rms_norm(v[0], v[1], scale, eps); };
  };
  check("[3, 4], gamma [4]", rms(2.0, 1e-12), {I({3, 4}), I({4})});
  check("strided [2, 3, 5]", rms(1.5, 1e-12), {S({2, 3, 5}), I({5})});
  check("transposed x, gamma per row", rms(3.0, 1e-12), {T({3, 5}), I({3, 1})});
  check("every row clamped to eps", rms(2.0, 50.0), {I({2, 4}), S({4})});
}
GRADCHECK("softmax") {
  check("dim -1", [](const V& v) { return ag::softmax(v[0], -1); }, {I({3, 5})});
  check("dim 0", [](const V& v) { return ag::softmax(v[0], 0); }, {T({3, 4})});
  check("3-d dim 1", [](const V& v) { return ag::softmax(v[0], 1); }, {S({2, 3, 4})});
}
GRADCHECK("log_softmax") {
  check("dim -1", [](const V& v) { return ag::log_softmax(v[0], -1); }, {I({3, 5})});
  check("dim 0", [](const V& v) { return ag::log_softmax(v[0], 0); }, {T({3, 4})});
}
GRADCHECK("cumsum") {
  check("inclusive dim 1", [](const V& v) { return ag::cumsum(v[0], 1); }, {I({3, 5})});
  check("exclusive dim 0", [](const V& v) { return ag::cumsum(v[0], 0, true); }, {T({4, 3})});
  check("reverse", [](const V& v) { return ag::cumsum(v[0], -1, false, true); }, {S({2, 3, 4})});
  check("exclusive reverse", [](const V& v) { return ag::cumsum(v[0], -2, true, true); }, {I({2, 3, 4})});
}

// ---- linear algebra --------------------------------------------------------------------------
GRADCHECK("matmul") {
  auto mm = [](const V& v) { return ag::matmul(v[0], v[1]); };
  check("2-d", mm, {I({3, 4}), I({4, 5})});
  check("batched", mm, {I({2, 3, 4}), I({2, 4, 5})});
  check("broadcast batch", mm, {I({2, 1, 3, 4}), I({3, 4, 2})});
  check("matrix @ shared weight", mm, {I({2, 3, 4}), I({4, 5})});
  check("transposed operands", mm, {T({3, 4}), T({4, 2})});
  check("strided operand", mm, {S({3, 4}), I({4, 2})});
  check("vector @ matrix", mm, {I({4}), I({4, 3})});
  check("matrix @ vector", mm, {I({3, 4}), I({4})});
  check("vector @ vector", mm, {I({4}), I({4})});
}

// ---- attention -------------------------------------------------------------------------------
// T not a multiple of the CPU kernel's 64-row block (65: two blocks, the second of one row);
// values in [-1, 1) keep the softmax away from one-hot.
GRADCHECK("causal_attention") {
  auto attn = [](double scale) { return [scale](const V& v) { return ag::causal_attention(v[0], v[1], v[2], scale); }; };
  check("B=2 H=2 T=5 D=3", attn(0.5), {I({2, 2, 5, 3}), I({2, 2, 5, 3}), I({2, 2, 5, 3})});
  check("strided q, transposed k", attn(1.0), {S({1, 2, 4, 3}), T({1, 2, 4, 3}), I({1, 2, 4, 3})});
  check("T=65 over two blocks", attn(0.7), {I({1, 1, 65, 2}), I({1, 1, 65, 2}), I({1, 1, 65, 2})});
  check("T=1", attn(1.0), {I({2, 1, 1, 4}), I({2, 1, 1, 4}), I({2, 1, 1, 4})});
}
GRADCHECK("rotary") {
  // Angles for T = 3 positions of D / 2 = 2 pairs; cos and sin of the same angles.
  const std::vector<double> angle{0.0, 0.0, 0.9, -0.4, 2.1, 0.3};
  std::vector<double> c, s;
  for (const double a : angle) c.push_back(std::cos(a)), s.push_back(std::sin(a));
  const auto cos = moegrad::core::from_vector<double>(c, {3, 2}), sin = moegrad::core::from_vector<double>(s, {3, 2});
  const auto fn = [cos, sin](const V& v) { return ag::rotary(v[0], on(cos, v[0]), on(sin, v[0])); };
  check("[2, 3, 4]", fn, {I({2, 3, 4})});
  check("strided [2, 2, 3, 4]", fn, {S({2, 2, 3, 4})});
  check("per-row angles broadcast [3, 1]", [cos](const V& v) {
    const auto col = moegrad::core::narrow(on(cos, v[0]), 1, 0, 1);
    return ag::rotary(v[0], col, moegrad::core::neg(col));
  }, {T({3, 2})});
}

// ---- views -----------------------------------------------------------------------------------
GRADCHECK("reshape") {
  check("contiguous", [](const V& v) { return ag::reshape(v[0], {4, -1}); }, {I({2, 3, 2})});
  check("copying (transposed)", [](const V& v) { return ag::reshape(v[0], {12}); }, {T({3, 4})});
}
GRADCHECK("view") { check("split dim", [](const V& v) { return ag::view(v[0], {2, 2, 3}); }, {I({4, 3})}); }
GRADCHECK("flatten") { check("middle", [](const V& v) { return ag::flatten(v[0], 1, 2); }, {S({2, 3, 2, 2})}); }
GRADCHECK("permute") { check("3-d", [](const V& v) { return ag::permute(v[0], {2, 0, 1}); }, {I({2, 3, 4})}); }
GRADCHECK("transpose") { check("last two", [](const V& v) { return ag::transpose(v[0], -1, -2); }, {S({2, 3, 4})}); }
GRADCHECK("narrow") {
  check("dim 1", [](const V& v) { return ag::narrow(v[0], 1, 1, 2); }, {I({3, 4})});
  check("transposed", [](const V& v) { return ag::narrow(v[0], 0, 2, 2); }, {T({4, 3})});
}
GRADCHECK("slice") {
  check("step 2", [](const V& v) { return ag::slice(v[0], 1, 0, 5, 2); }, {I({3, 5})});
  check("negative start", [](const V& v) { return ag::slice(v[0], 0, -2, 10); }, {S({4, 3})});
}
GRADCHECK("select") { check("dim 1", [](const V& v) { return ag::select(v[0], 1, 2); }, {I({3, 4})}); }
GRADCHECK("expand") {
  check("size-1 and new dims", [](const V& v) { return ag::expand(v[0], {2, 3, 4}); }, {I({3, 1})});
  check("keep with -1", [](const V& v) { return ag::expand(v[0], {5, -1}); }, {S({1, 3})});
}
GRADCHECK("squeeze") { check("dim 1", [](const V& v) { return ag::squeeze(v[0], 1); }, {I({3, 1, 4})}); }
GRADCHECK("unsqueeze") { check("dim -1", [](const V& v) { return ag::unsqueeze(v[0], -1); }, {T({3, 4})}); }
GRADCHECK("contiguous") { check("transposed", [](const V& v) { return ag::contiguous(v[0]); }, {T({3, 4})}); }
GRADCHECK("to_dtype") {
  gradcheck::Options loose{1e-3, 1e-3, 1e-3};  // through f32: single precision
  check("f64 -> f32 -> f64", [](const V& v) { return ag::to_dtype(ag::mul(ag::to_dtype(v[0], moegrad::core::DType::f32), 2.0), moegrad::core::DType::f64); },
        {I({3, 4})}, loose);
}

// ---- indexing and joining --------------------------------------------------------------------
GRADCHECK("topk") {
  check("k=2 last dim", [](const V& v) { return ag::topk(v[0], 2).values; }, {I({3, 5}, Domain::distinct)});
  check("k=1 dim 0", [](const V& v) { return ag::topk(v[0], 1, 0).values; }, {T({3, 4}, Domain::distinct)});
  check("smallest", [](const V& v) { return ag::topk(v[0], 3, -1, false).values; }, {S({2, 4}, Domain::distinct)});
}
GRADCHECK("gather") {
  const auto idx = gradcheck::index({0, 2, 1, 1, 3, 0}, {3, 2});
  check("dim 1 repeated", [idx](const V& v) { return ag::gather(v[0], 1, on(idx, v[0])); }, {I({3, 4})});
  const auto idx0 = gradcheck::index({2, 0, 1, 2}, {1, 4});
  check("dim 0", [idx0](const V& v) { return ag::gather(v[0], 0, on(idx0, v[0])); }, {T({3, 4})});
}
GRADCHECK("scatter") {
  const auto idx = gradcheck::index({0, 2, 3, 1, 2, 0}, {3, 2});
  check("dim 1", [idx](const V& v) { return ag::scatter(v[0], 1, on(idx, v[0]), v[1]); }, {I({3, 4}), I({3, 2})});
}
GRADCHECK("scatter_add") {
  const auto idx = gradcheck::index({0, 0, 3, 1, 2, 2}, {3, 2});
  check("dim 1 repeated", [idx](const V& v) { return ag::scatter_add(v[0], 1, on(idx, v[0]), v[1]); }, {T({3, 4}), I({3, 2})});
}
GRADCHECK("index_select") {
  const auto idx = gradcheck::index({2, 0, 2}, {3});
  check("dim 0 repeated", [idx](const V& v) { return ag::index_select(v[0], 0, on(idx, v[0])); }, {I({3, 4})});
  check("dim 1", [idx](const V& v) { return ag::index_select(v[0], 1, on(idx, v[0])); }, {S({2, 3})});
}
GRADCHECK("index_add") {
  const auto idx = gradcheck::index({1, 0, 1}, {3});
  check("dim 0 repeated", [idx](const V& v) { return ag::index_add(v[0], 0, on(idx, v[0]), v[1]); }, {I({2, 4}), I({3, 4})});
}
GRADCHECK("cat") {
  check("dim 0", [](const V& v) { return ag::cat({v[0], v[1], v[2]}, 0); }, {I({1, 3}), T({2, 3}), I({3, 3})});
  check("dim -1", [](const V& v) { return ag::cat({v[0], v[1]}, -1); }, {S({2, 2}), I({2, 3})});
}
GRADCHECK("stack") {
  check("dim 0", [](const V& v) { return ag::stack({v[0], v[1]}, 0); }, {I({2, 3}), T({2, 3})});
  check("dim -1", [](const V& v) { return ag::stack({v[0], v[1], v[2]}, -1); }, {I({3}), S({3}), I({3})});
}
GRADCHECK("chunk") {
  check("uneven", [](const V& v) {
    auto c = ag::chunk(v[0], 3, 1);
    return ag::cat({c[2], ag::mul(c[0], c[0])}, 1);
  }, {I({2, 5})});
}
GRADCHECK("split") {
  check("sizes", [](const V& v) {
    auto c = ag::split(v[0], std::vector<std::int64_t>{1, 3}, 0);
    return ag::mul(c[1], c[0]);
  }, {T({4, 3})});
  check("size 2", [](const V& v) { return ag::split(v[0], 2, -1)[1]; }, {I({2, 5})});
}
GRADCHECK("pad") {
  check("grow", [](const V& v) { return ag::pad(v[0], {1, 2, 0, 1}, 0.5); }, {I({2, 3})});
  check("crop", [](const V& v) { return ag::pad(v[0], {-1, 1}); }, {S({2, 4})});
}

// ---- mixture of experts (index-based dispatch) -----------------------------------------------
// row / offsets are fixed i64 constants; -1 rows are not routed. Zero scales come from a constant
// mask (the harness perturbs every input element).
GRADCHECK("dispatch_rows") {
  const auto row = gradcheck::index({0, 5, -1, 2, 3, -1, 6, 1}, {4, 2});  // 6 of R = 8 rows used
  check("k=2 unrouted, spare rows", [row](const V& v) { return ag::dispatch_rows(v[0], on(row, v[0]), v[1], 8); }, {I({4, 3}), I({4, 2})});
  const auto row1 = gradcheck::index({2, -1, 0, 4, 1}, {5, 1});
  check("k=1 transposed x, strided scale", [row1](const V& v) { return ag::dispatch_rows(v[0], on(row1, v[0]), v[1], 5); }, {T({5, 3}), S({5, 1})});
  const auto row3 = gradcheck::index({0, 3, -1, 5, 1, 2, -1, 4, 6}, {3, 3});
  const auto mask = moegrad::core::from_vector<double>({1, 0, 1, 1, 1, 0, 0, 1, 1}, {3, 3});
  check("k=3 scales exactly 0", [row3, mask](const V& v) {
    return ag::dispatch_rows(v[0], on(row3, v[0]), ag::mul(v[1], ag::constant(on(mask, v[0]))), 9);
  }, {S({3, 4}), T({3, 3})});
}
GRADCHECK("combine_rows") {
  const auto row = gradcheck::index({0, 5, -1, 2, 3, -1, 6, 1}, {4, 2});
  check("k=2 distinct, unrouted", [row](const V& v) { return ag::combine_rows(v[0], on(row, v[0]), v[1]); }, {I({8, 3}), I({4, 2})});
  const auto rep = gradcheck::index({0, 2, 0, -1, 1, 2, 3, 3, -1}, {3, 3});  // rows repeat
  check("k=3 repeated rows", [rep](const V& v) { return ag::combine_rows(v[0], on(rep, v[0]), v[1]); }, {T({4, 3}), S({3, 3})});
  const auto row1 = gradcheck::index({1, -1, 4, 0}, {4, 1});  // token 1 gets nothing
  const auto mask = moegrad::core::from_vector<double>({1, 1, 0, 1}, {4, 1});
  check("k=1 zero weight", [row1, mask](const V& v) {
    return ag::combine_rows(v[0], on(row1, v[0]), ag::mul(v[1], ag::constant(on(mask, v[0]))));
  }, {S({6, 2}), I({4, 1})});
  // The MoE round trip: dispatch to expert slots, per-expert linear map, weighted combine.
  const auto slots = gradcheck::index({0, 3, 4, -1, 1, 5, 2, -1}, {4, 2});
  const auto offsets = gradcheck::index({0, 2, 2, 7}, {4});  // slot 6 unused, group 1 empty
  check("dispatch -> grouped_matmul -> combine", [slots, offsets](const V& v) {
    auto h = ag::grouped_matmul(ag::dispatch_rows(v[0], on(slots, v[0]), v[2], 7), v[1], offsets, true);
    return ag::combine_rows(h, on(slots, v[0]), v[2]);
  }, {I({4, 3}), I({3, 2, 3}), I({4, 2})});
}
GRADCHECK("grouped_matmul") {
  const auto off = gradcheck::index({0, 2, 2, 6}, {4});  // group 1 empty
  check("w [E,a,b], empty group", [off](const V& v) { return ag::grouped_matmul(v[0], v[1], off, false); }, {I({6, 3}), I({3, 3, 2})});
  check("transposed x, strided w", [off](const V& v) { return ag::grouped_matmul(v[0], v[1], off, false); }, {T({6, 2}), S({3, 2, 4})});
  const auto off_t = gradcheck::index({0, 0, 4, 5}, {4});  // group 0 empty
  check("transpose_w [E,b,a]", [off_t](const V& v) { return ag::grouped_matmul(v[0], v[1], off_t, true); }, {I({5, 3}), I({3, 2, 3})});
  check("transpose_w, transposed w", [off_t](const V& v) { return ag::grouped_matmul(v[0], v[1], off_t, true); }, {S({5, 3}), T({3, 4, 3})});
  const auto none = gradcheck::index({0, 0, 0}, {3});
  check("no rows", [none](const V& v) { return ag::grouped_matmul(v[0], v[1], none, true); }, {I({0, 3}), I({2, 2, 3})});
  // With a per-group bias [E, b]: unequal groups (one empty) and equal groups (one broadcast fill).
  check("bias, empty group", [off](const V& v) { return ag::grouped_matmul(v[0], v[1], off, false, v[2]); },
        {I({6, 3}), I({3, 3, 2}), I({3, 2})});
  const auto equal = gradcheck::index({0, 2, 4, 6}, {4});
  check("bias, equal groups, transpose_w", [equal](const V& v) { return ag::grouped_matmul(v[0], v[1], equal, true, v[2]); },
        {I({6, 3}), I({3, 2, 3}), S({3, 2})});
}

// ---- distributed (a group of one process: the exchange is the identity; tests/dist/ checks the
// reverse exchange across ranks) ------------------------------------------------------------------
GRADCHECK("dist.all_to_all_v") {
  auto g = std::make_shared<moegrad::dist::LocalGroup>("test group");
  check("one member", [g](const V& v) { return moegrad::dist::all_to_all_v(v[0], g, {4}, {4}); }, {I({4, 3})});
  check("transposed", [g](const V& v) { return moegrad::dist::all_to_all_v(v[0], g, {3}, {3}); }, {T({3, 5})});
}

TEST_CASE("gradcheck catalogue: every differentiable op has an entry, and only those") {
  const auto& ops = ag::differentiable_ops();
  const std::set<std::string> covered(gradcheck::entries().begin(), gradcheck::entries().end());
  CHECK(ops.size() > 50);
  for (const auto& op : ops) CHECK_MESSAGE(covered.count(op) == 1, "no gradient check for op '", op, "'");
  for (const auto& e : covered) CHECK_MESSAGE(ops.count(e) == 1, "catalogue entry '", e, "' is not a registered op");
  MESSAGE("gradcheck catalogue: ", covered.size(), " entries for ", ops.size(), " ops");
}
