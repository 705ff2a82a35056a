#include "tools/predict_command.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/ops/indexing.h"
#include "core/ops/views.h"
#include "layers/moe/moe_layer.h"
#include "tools/cli.h"
#include "train/hdf5.h"
#include "train/inference.h"

namespace moegrad::tools {

namespace {
// A batch's [b, n, ...] result as the file's rows: [rows, ...] for a 2-d regression file (its
// batch is one group [1, rows, ...]), unchanged otherwise.
core::Tensor as_rows(const core::Tensor& t, const train::TensorData& d) {
  if (!d.row_tokens) return t;
  core::Shape shape(t.shape().begin() + 1, t.shape().end());
  return core::reshape(t, shape);
}
}  // namespace

int run_predict_command(int argc, char** argv) {
  CLI::App app{"Runs a checkpoint's model over the inputs of an HDF5 file (x [N, in] or [N, seq, in]; or tokens "
               "[N, seq]) in eval mode, batches in file order, and writes OUT.h5 (atomically) with the outputs, y "
               "[N, (seq,) out] for regression or logits [N, seq, vocab] for tokens, and for every MoE layer, per token "
               "and choice: /routing/<layer>/experts (int64, the flat expert id, -1 where none was routed), "
               "/routing/<layer>/weights (float32, the weight of that expert's output; 0 when dropped) and "
               "/routing/<layer>/dropped (uint8, 1 where the expert was full), each [N, (seq,) k]. st_moe: k = top-n; "
               "lucidrains: k = 2; hierarchical: k = 4, choice 2j + i is inner choice i of outer choice j, expert "
               "outer * inner_count + inner, weight outer x inner.",
               "moegrad predict"};
  app.footer("Errors print one line \"moegrad predict: <message>\": exit 2 for a usage error, 1 for an error while "
             "running (a bad checkpoint or input file, inputs that do not fit the model, an unwritable output).");
  std::string ckpt, input, output;
  std::int64_t batch = 0;
  app.add_option("CKPT.h5", ckpt, "the checkpoint (moegrad train --ckpt-dir)")->required();
  app.add_option("--input", input, "the HDF5 file of inputs")->required()->type_name("FILE.h5");
  app.add_option("--output", output, "where to write the outputs and the routing")->required()->type_name("OUT.h5");
  cli::add_integer(app, "--batch-size", batch, 0, std::int64_t{1} << 40,
                   "rows per batch; 0 = the checkpoint's --batch-size (capacity acts within a batch's groups)");
  return cli::run(app, argc, argv, [&] {
    train::InferenceModel m(ckpt);
    const auto d = train::load_tensor_data(input, "--input", train::TensorUse::predict);
    m.check_fits(*d, "--input");
    const train::OrderedTensors batches(d, batch > 0 ? batch : m.config().batch_size);
    const auto& layers = m.moe_layers();
    for (const auto& [name, layer] : layers) layer->record_token_routing(true);
    std::vector<core::Tensor> outputs;
    std::vector<std::vector<core::Tensor>> experts(layers.size()), weights(layers.size()), dropped(layers.size());
    for (std::int64_t j = 0; j < batches.batches(); ++j) {
      const train::ModelOutput out = m.run(batches, j);
      outputs.push_back(as_rows(out.prediction, *d));
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const nn::moe::TokenRouting& r = layers[l].second->last_token_routing();
        experts[l].push_back(as_rows(r.experts, *d));
        weights[l].push_back(as_rows(r.weights, *d));
        dropped[l].push_back(as_rows(r.dropped, *d));
      }
    }
    const bool tokens = m.config().token_task();
    std::vector<std::string> names;
    for (const auto& [name, layer] : layers) names.push_back(name);
    const core::Tensor result = core::cat(outputs, 0);
    h5::write_atomically(output, [&](h5::File& f) {
      f.write(tokens ? "logits" : "y", result);
      for (std::size_t l = 0; l < layers.size(); ++l) {
        const std::string group = "routing/" + layers[l].first;
        f.write(group + "/experts", core::cat(experts[l], 0));
        f.write(group + "/weights", core::cat(weights[l], 0));
        f.write(group + "/dropped", core::cat(dropped[l], 0));
      }
      f.set_attribute("checkpoint", ckpt);
      f.set_attribute("input", input);
      f.set_attribute("model", m.config().model.kind);
      f.set_attribute("batch_size", batches.batch_size());
      f.set_attribute("moe_layers", fmt::format("{}", fmt::join(names, ",")));
    });
    fmt::print("predict {} on {}: {} rows in {} batches of {}\nwrote {}: {} {}, routing of {} MoE layer(s){}\n", ckpt,
               input, d->rows(), batches.batches(), batches.batch_size(), output, tokens ? "logits" : "y",
               core::shape_str(result.shape()), layers.size(),
               names.empty() ? std::string() : fmt::format(" ({})", fmt::join(names, ", ")));
    return 0;
  });
}

}  // namespace moegrad::tools
