#include "layers/st_expert.h"

#include <cmath>

#include "layers/check.h"
#include "layers/geglu.h"
#include "layers/init.h"
#include "layers/linear.h"
#include "layers/rms_norm.h"

namespace moegrad::nn::st {

std::int64_t Expert::hidden_dim_for(std::int64_t dim, double hidden_mult) {
  // Python: int(dim * hidden_mult * 2 / 3), evaluated left to right, truncated toward 0.
  const double h = static_cast<double>(dim) * hidden_mult * 2.0 / 3.0;
  // Only values inside int64 have a defined cast (a NaN fails here too); 2^62 leaves room for 2 * h.
  MOEGRAD_CHECK(h > -1.0 && h < 4611686018427387904.0, "st.Expert",
                "hidden size int(dim * hidden_mult * 2 / 3) = {} is too large (dim {}, hidden_mult {})", h, dim,
                hidden_mult);
  return static_cast<std::int64_t>(h);
}

Expert::Expert(std::int64_t dim, double hidden_mult, bool mult_bias, bool prenorm, TensorOptions options,
               core::Generator* gen)
    : dim_(dim), hidden_(hidden_dim_for(dim, hidden_mult)), prenorm_(prenorm) {
  MOEGRAD_CHECK(dim > 0, "st.Expert", "dim must be > 0, got {}", dim);
  MOEGRAD_CHECK(hidden_ > 0, "st.Expert", "hidden dim int({} * {} * 2 / 3) = {} must be > 0", dim, hidden_mult,
                hidden_);
  net_ = register_module("net", std::make_shared<Sequential>());
  if (prenorm) net_->push_back(std::make_shared<RMSNorm>(dim, options));
  auto l1 = net_->push_back(std::make_shared<Linear>(dim, 2 * hidden_, true, options, gen));
  net_->push_back(std::make_shared<GEGLU>(hidden_, mult_bias, options));
  auto l2 = net_->push_back(std::make_shared<Linear>(hidden_, dim, true, options, gen));
  for (const auto& l : {l1, l2}) {  // self.apply(self.init_)
    const double bound = std::pow(static_cast<double>(l->out_features()), -0.5);
    init::uniform_(l->weight().value(), -bound, bound, gen);
    init::uniform_(l->bias().value(), -bound, bound, gen);
  }
}

Variable Expert::forward(const Variable& x) {
  MOEGRAD_CHECK(x.defined(), "st.Expert", "input is undefined");
  check_last_dim("st.Expert", x, dim_, "dim");
  return net_->forward(x);
}

}  // namespace moegrad::nn::st
