#!/usr/bin/env python3
"""Training on your own data end to end (numpy + h5py only): `moegrad train --task tensors`,
`moegrad eval` and `moegrad predict` on HDF5 files written here.

  1. every kind of file (regression [N, in] and [N, seq, in] in float32/float64, tokens with and
     without targets) trains; a run stopped at step K and resumed equals the uninterrupted one bit
     for bit (model, optimizer state, metrics); a changed file refuses to resume;
  2. eval's loss (and accuracy) equals a numpy recomputation from predict's outputs on the same
     batches, and eval's per-expert loads equal the kept choices predict wrote;
  3. predict's routing is consistent for st_moe, lucidrains and hierarchical: valid expert ids,
     k choices per token, weights zero exactly where a choice was dropped or not routed, and for
     st_moe the experts and weights the gate defines, recomputed in numpy from the checkpoint;
  4. every bad input gives its exit code and one line naming the problem;
  5. with MPI, 2 ranks x 1 micro-batch train the same model as 1 rank x 2 (data parallelism).

usage: check_tensor_data.py MOEGRAD_BIN WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

BIN, WORK = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def run(args, expect=0, cwd=None, env=None):
    p = subprocess.run([BIN] + args, capture_output=True, text=True, cwd=cwd or WORK,
                       env=dict(os.environ, **(env or {})), timeout=600)
    if expect is not None and p.returncode != expect:
        check(False, f"moegrad {' '.join(args)}: exit {p.returncode}, expected {expect}\n{p.stderr[-2000:]}")
    return p


def write(name, **datasets):
    path = os.path.join(WORK, name)
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f[key] = value
    return path


def read_all(path, group):
    out = {}
    with h5py.File(path, "r") as f:
        f[group].visititems(lambda k, v: out.__setitem__(k, np.array(v)) if isinstance(v, h5py.Dataset) else None)
    return out


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
rng = np.random.default_rng(11)

# ---- the files -----------------------------------------------------------------------------
# 50 rows with batches of 8: batches straddle epochs (50 is not a multiple of 8).
X2 = rng.normal(size=(50, 6)).astype(np.float32)
Y2 = np.tanh(X2 @ rng.normal(size=(6, 3))).astype(np.float32)
REG2 = write("reg2d.h5", x=X2, y=Y2)
X3 = rng.normal(size=(30, 5, 4))  # float64
Y3 = np.sin(X3 @ rng.normal(size=(4, 2)))
REG3 = write("reg3d.h5", x=X3, y=Y3)
TOK = rng.integers(0, 23, size=(40, 9)).astype(np.int64)
TOKENS = write("tokens.h5", tokens=TOK)
TGT_IN = rng.integers(0, 17, size=(40, 7)).astype(np.int32)
TGT_OUT = (TGT_IN * 5 + 3) % 17
TARGETS = write("targets.h5", tokens=TGT_IN, targets=TGT_OUT)

SMALL = ["--dim", "8", "--hidden", "8", "--experts", "4", "--batch-size", "8", "--warmup", "2", "--log-every", "1",
         "--eval-every", "5", "--eval-batches", "2", "--ckpt-every", "3", "--keep-last", "0", "--no-progress"]


def train(data, folder, steps, extra=(), expect=0, seed=5):
    return run(["train", "--task", "tensors", "--train-data", data, "--steps", str(steps), "--ckpt-dir",
                f"{folder}/ckpt", "--metrics", f"{folder}/m.jsonl", "--seed", str(seed)] + SMALL + list(extra),
               expect=expect)


def metrics(folder):
    out = []
    for line in open(f"{folder}/m.jsonl"):
        r = json.loads(line)
        r.pop("ms_per_step", None)
        r.pop("tokens_per_s", None)
        out.append(r)
    return out


# ---- 1. every kind trains; stop + resume == uninterrupted ------------------------------------
for name, data, extra in [("reg2d", REG2, ["--noise-gates"]), ("reg3d", REG3, ["--model", "lucidrains"]),
                          ("tokens", TOKENS, ["--model", "hierarchical", "--experts-outer", "2"]),
                          ("targets", TARGETS, ["--top-n", "1"])]:
    full, part = os.path.join(WORK, name + "-full"), os.path.join(WORK, name + "-part")
    p = train(data, full, 17, extra)
    check("tensors '" in p.stderr and "eval data: the first 2 batches of 8 rows of --train-data" in p.stderr,
          f"{name}: the log names the file and says what evaluates without --eval-data")
    train(data, part, 17, extra + ["--stop-at", "7"])
    p = train(data, part, 17, extra)
    check("resumed from" in p.stderr, f"{name}: the second run resumed")
    a, b = f"{full}/ckpt/step-000000017.h5", f"{part}/ckpt/step-000000017.h5"
    for group in ("model", "optimizer"):
        ta, tb = read_all(a, group), read_all(b, group)
        check(ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta),
              f"{name}: stopped at 7 and resumed, /{group} equals the uninterrupted run's bit for bit")
    check(metrics(full) == metrics(part), f"{name}: the metrics of the resumed run equal the uninterrupted run's")
    check(all(np.isfinite(r["loss"]) for r in metrics(full)), f"{name}: finite losses")
    with h5py.File(a, "r") as f:
        config = json.loads(f.attrs["config_json"])
        identity = json.loads(f.attrs["identity_json"])
    check(config["data_kind"] == ("tokens" if name.startswith("t") else "regression"), f"{name}: data_kind stored")
    check("crc64" in identity.get("train_data", {}), f"{name}: the file's digest is part of the identity")
    if name == "tokens":
        check(config["vocab"] == int(TOK.max()) + 1 and config["seq_len"] == 8,
              f"{name}: vocabulary = largest token + 1 and next-token positions = seq - 1")
    if name == "reg2d":
        check(config["input_dim"] == 6 and config["output_dim"] == 3 and config["seq_len"] == 1,
              f"{name}: the widths come from the file")

# The seed picks the shuffle (and the initialisation): another seed, another first loss.
train(REG2, os.path.join(WORK, "seed-a"), 4, seed=1)
train(REG2, os.path.join(WORK, "seed-b"), 4, seed=2)
check(metrics(os.path.join(WORK, "seed-a"))[0]["loss"] != metrics(os.path.join(WORK, "seed-b"))[0]["loss"],
      "another --seed shuffles other batches")

# A changed file (one value) refuses to resume, in one line.
changed = write("reg2d-changed.h5", x=X2, y=Y2 + np.float32(1e-3) * (np.arange(50)[:, None] == 7))
p = run(["train", "--task", "tensors", "--train-data", changed, "--steps", "17", "--ckpt-dir",
         f"{WORK}/reg2d-part/ckpt", "--seed", "5"] + SMALL + ["--noise-gates"], expect=1)
check(len(p.stderr.strip().splitlines()) == 1 and "train_data" in p.stderr and "another model or task" in p.stderr,
      f"a resume with a changed --train-data is refused in one line: {p.stderr.strip()}")

# ---- 2. eval against predict ------------------------------------------------------------------


def log_softmax(z):
    z = z.astype(np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def eval_and_predict(ckpt, data, inputs, tag, batch=None):
    extra = ["--batch-size", str(batch)] if batch else []
    out_json, out_h5 = f"{WORK}/{tag}-eval.json", f"{WORK}/{tag}-pred.h5"
    p = run(["eval", ckpt, "--data", data, "--output", out_json] + extra)
    check("loss" in p.stdout and "layer " in p.stdout, f"{tag}: eval prints the loss and the layers")
    run(["predict", ckpt, "--input", inputs, "--output", out_h5] + extra)
    return json.load(open(out_json)), out_h5


def routing_of(path):
    with h5py.File(path, "r") as f:
        return {name: {k: np.array(v) for k, v in f["routing"][name].items()} for name in f["routing"]}


def check_loads(tag, ev, routing, experts_total):
    for layer in ev["layers"]:
        r = routing[layer["name"]]
        kept = (r["experts"] >= 0) & (r["dropped"] == 0)
        loads = np.bincount(r["experts"][kept].ravel(), minlength=experts_total)
        check(list(loads) == layer["tokens_per_expert"],
              f"{tag}: eval's tokens per expert equal predict's kept choices ({list(loads)} vs {layer['tokens_per_expert']})")
        routed = np.bincount(r["experts"][r["experts"] >= 0].ravel(), minlength=experts_total)
        check(list(routed) == layer["routed_per_expert"], f"{tag}: eval's routed choices equal predict's")
        frac = 1 - kept.sum() / max((r["experts"] >= 0).sum(), 1)
        check(abs(frac - layer["dropped_fraction"]) < 1e-12, f"{tag}: dropped fraction")


# regression, 2-d: st_moe with noise gates at training (none at eval)
ck = f"{WORK}/reg2d-full/ckpt/step-000000017.h5"
ev, pred = eval_and_predict(ck, REG2, REG2, "reg2d")
with h5py.File(pred, "r") as f:
    y = np.array(f["y"])
check(y.shape == Y2.shape, "reg2d: predict writes y [N, out]")
numpy_loss = float(np.mean((y.astype(np.float64) - Y2) ** 2))
check(abs(numpy_loss - ev["loss"]) <= 1e-6 * abs(numpy_loss), f"reg2d: eval loss {ev['loss']} = numpy MSE of predict's y {numpy_loss}")
check(ev["rows"] == 50 and ev["batches"] == 7, "reg2d: 7 batches of 8 (the last of 2) cover the 50 rows")
check_loads("reg2d", ev, routing_of(pred), 4)
# Another batch size is another grouping (capacity acts within a batch) and still agrees.
ev5, pred5 = eval_and_predict(ck, REG2, REG2, "reg2d-b5", batch=5)
with h5py.File(pred5, "r") as f:
    y5 = np.array(f["y"])
check(abs(float(np.mean((y5.astype(np.float64) - Y2) ** 2)) - ev5["loss"]) <= 1e-6 * ev5["loss"], "reg2d --batch-size 5")
check(ev5["batches"] == 10, "reg2d --batch-size 5: 10 batches")

# st_moe's gate recomputed in numpy from the checkpoint: the experts are the top-n of the softmax
# of the gate logits and each kept weight is its probability over the top-n's sum.
params = read_all(ck, "model")
r = routing_of(pred)["blocks.0.ff.moe"]
h = X2.astype(np.float64) @ params["in_proj.weight"].T + params["in_proj.bias"]
n = h / np.maximum(np.linalg.norm(h, axis=-1, keepdims=True), 1e-12) * params["blocks.0.norm.gamma"] * np.sqrt(8)
logits = n @ params["blocks.0.ff.moe.gate.to_gates.weight"].T
probs = np.exp(log_softmax(logits))
order = np.argsort(-probs, axis=-1, kind="stable")[:, :2]
top = np.take_along_axis(probs, order, -1)
gates = top / top.sum(-1, keepdims=True)
check(r["experts"].shape == (50, 2) and r["weights"].shape == (50, 2) and r["dropped"].shape == (50, 2),
      "reg2d: routing [N, k] with k = top-n = 2")
routed = r["experts"] >= 0
check(np.array_equal(r["experts"][routed], order[routed]), "st_moe: the routed experts are the gate's top-n")
kept = routed & (r["dropped"] == 0)
check(np.allclose(r["weights"][kept], gates[kept], rtol=1e-4, atol=1e-6), "st_moe: kept weights = normalised top-n gates")
check(np.all(r["weights"][~kept] == 0), "st_moe: weights are 0 where dropped or not routed")
check(np.all(routed[:, 0]), "st_moe: every token's first choice is routed")

# regression, 3-d float64, lucidrains: y [N, seq, out], routing [N, seq, 2]
ck = f"{WORK}/reg3d-full/ckpt/step-000000017.h5"
ev, pred = eval_and_predict(ck, REG3, REG3, "reg3d")
with h5py.File(pred, "r") as f:
    y = np.array(f["y"])
numpy_loss = float(np.mean((y.astype(np.float64) - Y3.astype(np.float32)) ** 2))
check(abs(numpy_loss - ev["loss"]) <= 1e-6 * numpy_loss, f"reg3d: eval loss {ev['loss']} = numpy {numpy_loss}")
rt = routing_of(pred)["blocks.0.ff.moe"]
check(rt["experts"].shape == (30, 5, 2), "lucidrains: routing [N, seq, 2]")
check(np.all((rt["experts"] >= -1) & (rt["experts"] < 4)), "lucidrains: expert ids in [-1, 4)")
check(np.all(rt["experts"][..., 0] >= 0), "lucidrains: the top-1 choice is always routed")
ok = (rt["experts"] >= 0) & (rt["dropped"] == 0)
check(np.all((rt["weights"] > 0) == ok) and np.all(rt["weights"].sum(-1) <= 1 + 1e-5),
      "lucidrains: positive weights exactly on kept choices, at most 1 per token")
check_loads("reg3d", ev, routing_of(pred), 4)

# tokens with targets: cross-entropy and accuracy from predict's logits
ck = f"{WORK}/targets-full/ckpt/step-000000017.h5"
ev, pred = eval_and_predict(ck, TARGETS, TARGETS, "targets")
with h5py.File(pred, "r") as f:
    logits = np.array(f["logits"])
check(logits.shape == (40, 7, 17), f"targets: logits [N, seq, vocab], got {logits.shape}")
lp = log_softmax(logits)
ce = -np.take_along_axis(lp, TGT_OUT[..., None].astype(np.int64), -1).mean()
acc = float((logits.argmax(-1) == TGT_OUT).mean())
check(abs(ce - ev["loss"]) <= 1e-5 * ce, f"targets: eval loss {ev['loss']} = numpy cross-entropy {ce}")
check(abs(acc - ev["accuracy"]) < 1e-12, f"targets: eval accuracy {ev['accuracy']} = numpy {acc}")
rt = routing_of(pred)["blocks.0.ff.moe"]
check(rt["experts"].shape == (40, 7, 1) and np.all(rt["experts"] >= 0), "st_moe top-1: one routed choice per token")
check(np.allclose(rt["weights"][rt["dropped"] == 0], 1.0, atol=1e-6), "st_moe top-1: a kept choice has weight 1")

# tokens without targets (next-token), hierarchical: eval on the file; predict on tokens[:, :-1]
ck = f"{WORK}/tokens-full/ckpt/step-000000017.h5"
inputs = write("tokens-inputs.h5", tokens=TOK[:, :-1])
ev, pred = eval_and_predict(ck, TOKENS, inputs, "tokens")
with h5py.File(pred, "r") as f:
    logits = np.array(f["logits"])
lp = log_softmax(logits)
ce = -np.take_along_axis(lp, TOK[:, 1:, None], -1).mean()
check(abs(ce - ev["loss"]) <= 1e-5 * ce, f"tokens: next-token eval loss {ev['loss']} = numpy {ce}")
check(abs(float((logits.argmax(-1) == TOK[:, 1:]).mean()) - ev["accuracy"]) < 1e-12, "tokens: accuracy")
rt = routing_of(pred)["blocks.0.ff.moe"]
check(rt["experts"].shape == (40, 8, 4), "hierarchical: routing [N, seq, 4]")
e = rt["experts"]
check(np.all((e >= -1) & (e < 4)), "hierarchical: flat expert ids in [-1, outer x inner = 4)")
both = (e[..., 0] >= 0) & (e[..., 1] >= 0)
check(np.all(e[..., 0][both] // 2 == e[..., 1][both] // 2), "hierarchical: inner choices 0, 1 share their outer expert")
both = (e[..., 0] >= 0) & (e[..., 2] >= 0)
check(np.all(e[..., 0][both] // 2 != e[..., 2][both] // 2), "hierarchical: the two outer choices differ")
ok = (e >= 0) & (rt["dropped"] == 0)
check(np.all((rt["weights"] > 0) == ok) and np.all(rt["weights"].sum(-1) <= 1 + 1e-5),
      "hierarchical: positive weights (outer x inner) exactly on kept choices, at most 1 per token")
check_loads("tokens", ev, routing_of(pred), 4)

# On the batches a run evaluated (its --eval-data in full batches, --eval-batches covering them),
# eval reproduces the run's logged eval loss: the same batches, the same routing draws.
ev_file = write("eval16.h5", x=X2[:16] * 0.5, y=Y2[:16])
folder = os.path.join(WORK, "logged-eval")
train(REG2, folder, 6, ["--model", "lucidrains", "--eval-data", ev_file])
logged = [r["eval_loss"] for r in metrics(folder) if "eval_loss" in r][-1]
p = run(["eval", f"{folder}/ckpt/step-000000006.h5", "--data", ev_file, "--output", f"{folder}/e.json"])
got = json.load(open(f"{folder}/e.json"))["loss"]
check(abs(got - logged) <= 1e-6 * logged, f"eval reproduces the run's logged eval loss ({got} vs {logged})")

# A synthetic task's checkpoint evaluates on a file of its widths.
synth = os.path.join(WORK, "synthetic")
run(["train", "--steps", "3", "--dim", "8", "--hidden", "8", "--experts", "4", "--input-dim", "6",
     "--batch-size", "4", "--seq-len", "5", "--ckpt-dir", f"{synth}/ckpt", "--no-progress"])
synth_ck = f"{synth}/ckpt/step-000000003.h5"
synth_data = write("synthetic-fit.h5", x=rng.normal(size=(8, 5, 6)), y=rng.normal(size=(8, 5, 6)))
p = run(["eval", synth_ck, "--data", synth_data])
check("loss" in p.stdout, "eval of a clustered-regression checkpoint on a file of its widths")

# ---- 3. bad inputs: exit code and one line naming the problem --------------------------------
bad = {
    "empty": open(os.path.join(WORK, "empty.h5"), "wb").close() or os.path.join(WORK, "empty.h5"),
    "text": os.path.join(WORK, "text.h5"),
    "nodata": write("nodata.h5", z=np.zeros(3)),
    "noy": write("noy.h5", x=X2),
    "both": write("both.h5", x=X2, y=Y2, tokens=TOK),
    "rank": write("rank.h5", x=np.zeros(5, np.float32), y=np.zeros(5, np.float32)),
    "intx": write("intx.h5", x=np.zeros((20, 3), np.int32), y=np.zeros((20, 2), np.float32)),
    "floattok": write("floattok.h5", tokens=np.zeros((20, 4), np.float32)),
    "nan": write("nan.h5", x=np.where(np.arange(50)[:, None] == 13, np.nan, X2).astype(np.float32), y=Y2),
    "inf": write("inf.h5", x=X2, y=np.where(np.arange(50)[:, None] == 21, np.inf, Y2).astype(np.float32)),
    "f64big": write("f64big.h5", x=np.where(np.arange(50)[:, None] == 4, 1e300, X2.astype(np.float64)), y=Y2),
    "rows": write("rows.h5", x=X2, y=Y2[:40]),
    "small": write("small.h5", x=X2[:5], y=Y2[:5]),
    "seq1": write("seq1.h5", tokens=TOK[:, :1]),
    "negtok": write("negtok.h5", tokens=np.where(np.arange(40)[:, None] == 9, -3, TOK)),
    "targets-shape": write("targets-shape.h5", tokens=TGT_IN, targets=TGT_OUT[:, :5]),
    "seqmix": write("seqmix.h5", x=X3, y=Y3[:, :4]),
    "emptyx": write("emptyx.h5", x=np.zeros((0, 3), np.float32), y=np.zeros((0, 2), np.float32)),
}
open(bad["text"], "w").write("x,y\n1,2\n")
os.makedirs(os.path.join(WORK, "adir"), exist_ok=True)
BASE = ["--steps", "2", "--batch-size", "8", "--no-progress"]
cases = [
    (["--task", "tensors"], 2, ["--train-data"]),
    (["--train-data", REG2], 2, ["--train-data", "--task tensors"]),
    (["--task", "sequence", "--eval-data", REG2], 2, ["--eval-data"]),
    (["--task", "sequence", "--data-kind", "tokens"], 2, ["--data-kind", "--task tensors"]),
    (["--task", "tensors", "--train-data", REG2, "--data-kind", "images"], 2, ["--data-kind"]),
    (["--task", "tensors", "--train-data", "missing.h5"], 1, ["missing.h5", "no such file"]),
    (["--task", "tensors", "--train-data", "adir"], 1, ["adir", "directory"]),
    (["--task", "tensors", "--train-data", bad["empty"]], 1, ["not an HDF5 file", "empty"]),
    (["--task", "tensors", "--train-data", bad["text"]], 1, ["not an HDF5 file"]),
    (["--task", "tensors", "--train-data", bad["nodata"]], 1, ["neither", "'x'", "tokens", "found: z"]),
    (["--task", "tensors", "--train-data", bad["noy"]], 1, ["no 'y'"]),
    (["--task", "tensors", "--train-data", bad["both"]], 1, ["both 'x' and 'tokens'"]),
    (["--task", "tensors", "--train-data", bad["rank"]], 1, ["--train-data", "'x'", "[N, in]", "(5,)"]),
    (["--task", "tensors", "--train-data", bad["intx"]], 1, ["'x'", "float32 or float64", "i64"]),
    (["--task", "tensors", "--train-data", bad["floattok"]], 1, ["'tokens'", "integers", "f32"]),
    (["--task", "tensors", "--train-data", bad["nan"]], 1, ["'x'", "NaN or Inf", "row 13"]),
    (["--task", "tensors", "--train-data", bad["inf"]], 1, ["'y'", "NaN or Inf", "row 21"]),
    (["--task", "tensors", "--train-data", bad["f64big"]], 1, ["'x'", "as float32", "row 4"]),
    (["--task", "tensors", "--train-data", bad["rows"]], 1, ["'x' has 50 rows and 'y' has 40"]),
    (["--task", "tensors", "--train-data", bad["small"]], 1, ["5 rows", "fewer than one batch", "--batch-size 8"]),
    (["--task", "tensors", "--train-data", bad["seq1"]], 1, ["'tokens'", "at least 2", "targets"]),
    (["--task", "tensors", "--train-data", bad["negtok"]], 1, ["token -3", "'tokens'", "row 9", "negative"]),
    (["--task", "tensors", "--train-data", bad["targets-shape"]], 1, ["'targets'", "shape of 'tokens'"]),
    (["--task", "tensors", "--train-data", bad["seqmix"]], 1, ["sequences of 5", "of 4"]),
    (["--task", "tensors", "--train-data", bad["emptyx"]], 1, ["'x'", "empty"]),
    (["--task", "tensors", "--train-data", TOKENS, "--vocab", "10"], 1, ["outside [0, 10)", "row", "--vocab 10"]),
    (["--task", "tensors", "--train-data", REG2, "--eval-data", TOKENS], 1, ["--eval-data", "tokens", "regression"]),
    (["--task", "tensors", "--train-data", REG2, "--eval-data", bad["seqmix"]], 1, ["--eval-data", "sequences of 5"]),
    (["--task", "tensors", "--train-data", REG2, "--eval-data", REG3], 1, ["--eval-data", "widths", "4 -> y 2", "6 -> 3"]),
    (["--task", "tensors", "--train-data", REG2, "--data-kind", "tokens"], 1, ["--data-kind tokens", "regression"]),
]
reg_ck = f"{WORK}/reg2d-full/ckpt/step-000000017.h5"
tok_ck = f"{WORK}/targets-full/ckpt/step-000000017.h5"
out_dir = os.path.join(WORK, "no-such-dir", "out.h5")
eval_cases = [
    (["eval", reg_ck], 2, ["--data"]),
    (["eval", reg_ck, "--data", TOKENS], 1, ["tokens", "regression model", "x width 6 -> y width 3"]),
    (["eval", tok_ck, "--data", REG2], 1, ["regression data", "token model", "vocabulary 17"]),
    (["eval", reg_ck, "--data", REG3], 1, ["x of width 4", "x width 6"]),
    (["eval", reg_ck, "--data", write("ywidth.h5", x=X2, y=np.zeros((50, 5), np.float32))], 1, ["y of width 5"]),
    (["eval", tok_ck, "--data", TOKENS], 1, ["outside [0, 17)", "row", "vocabulary of 17"]),
    (["eval", reg_ck, "--data", bad["nan"]], 1, ["NaN or Inf", "row 13"]),
    (["eval", "missing-ckpt.h5", "--data", REG2], 1, ["missing-ckpt.h5"]),
    (["eval", REG2, "--data", REG2], 1, ["reg2d.h5"]),
    (["eval", reg_ck, "--data", REG2, "--batch-size", "-1"], 2, ["--batch-size"]),
    (["predict", reg_ck, "--input", REG2], 2, ["--output"]),
    (["predict", reg_ck, "--input", bad["noy"], "--output", out_dir], 1, ["no-such-dir"]),
    (["predict", reg_ck, "--input", bad["text"], "--output", "o.h5"], 1, ["not an HDF5 file"]),
    (["predict", tok_ck, "--input", bad["negtok"], "--output", "o.h5"], 1, ["negative", "row 9"]),
]
for argv, code, needles in [(["train"] + BASE + a, c, n) for a, c, n in cases] + eval_cases:
    p = run(argv, expect=None)
    lines = p.stderr.strip().splitlines()
    ok = (p.returncode == code and len(lines) == 1 and lines[0].startswith(f"moegrad {argv[0]}: ")
          and all(s in lines[0] for s in needles))
    check(ok, f"moegrad {' '.join(argv)}: expected exit {code} and one line with {needles}; got exit "
              f"{p.returncode}: {p.stderr.strip()[:600]}")
# predict needs no y: a file of inputs only is fine
run(["predict", reg_ck, "--input", bad["noy"], "--output", "inputs-only.h5"])
check(os.path.exists(os.path.join(WORK, "inputs-only.h5")), "predict on a file of x alone")

# ---- 4. data parallelism: 2 ranks x 1 micro-batch = 1 rank x 2 --------------------------------
info = run(["info"]).stdout
if "MPI yes" in info and shutil.which("mpirun"):
    env = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMPI_MCA_btl": "self,vader",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMP_NUM_THREADS": "1",
           # Open MPI's own allocations are not ours to report (sanitizer builds).
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}
    common = ["train", "--task", "tensors", "--train-data", REG2, "--steps", "6", "--seed", "5"] + SMALL
    one = os.path.join(WORK, "dp-1")
    run(common + ["--grad-accum", "2", "--ckpt-dir", f"{one}/ckpt"], env=env)
    two = os.path.join(WORK, "dp-2")
    p = subprocess.run(["mpirun", "-np", "2", BIN] + common + ["--ckpt-dir", f"{two}/ckpt"], capture_output=True,
                       text=True, env=dict(os.environ, **env), cwd=WORK, timeout=600)
    check(p.returncode == 0, f"mpirun -np 2 --task tensors: exit {p.returncode}\n{p.stderr[-1500:]}")
    if p.returncode == 0:
        a, b = read_all(f"{one}/ckpt/step-000000006.h5", "model"), read_all(f"{two}/ckpt/step-000000006.h5", "model")
        diff = max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(b[k]))), 1e-30)) for k in b)
        check(diff < 1e-4, f"2 ranks x 1 micro-batch = 1 rank x 2 (max relative difference {diff:.2e})")
        print(f"data parallel: max relative difference {diff:.2e}")
else:
    print("data-parallel check skipped: no MPI in this build")

if failures:
    print(f"{len(failures)} failure(s)")
    sys.exit(1)
print("tensor data, eval and predict: ok")
