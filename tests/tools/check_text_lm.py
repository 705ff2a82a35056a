#!/usr/bin/env python3
"""End-to-end checks of the byte-level language model (issue 17): `moegrad train --task text`
stopped and resumed equals the uninterrupted run bit for bit (model and optimizer state, metrics),
bits per byte in the log and the metrics (= loss / ln 2), --eval-text or the held-out end of
--text, `moegrad generate` deterministic for a seed (greedy whatever the seed), a prompt longer
than the context, `moegrad eval --text` (consecutive windows, the last one partial) equal to a
numpy recomputation from `moegrad predict`'s logits on the same windows, and every bad input as
one line.

usage: check_text_lm.py MOEGRAD_BIN WORK_DIR
"""
import json
import math
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
        print("FAIL:", what)


def run(args, expect=0):
    p = subprocess.run([BIN] + args, capture_output=True)
    p.stdout_text = p.stdout.decode("utf-8", "replace")
    p.stderr_text = p.stderr.decode("utf-8", "replace")
    if expect is not None and p.returncode != expect:
        check(False, f"{' '.join(args)}: exit {p.returncode}, expected {expect}\n{p.stderr_text}")
    return p


def one_line_error(args, needle):
    p = run(args, expect=None)
    lines = p.stderr_text.strip().splitlines()
    check(p.returncode != 0, f"{' '.join(args)}: exit 0, expected an error")
    check(len(lines) == 1 and needle in lines[0], f"{' '.join(args)}: expected one line with {needle!r}, got {lines}")


def states(path):
    out = {}
    with h5py.File(path, "r") as f:
        for group in ("model", "optimizer"):
            f[group].visititems(lambda k, v: out.__setitem__(group + "/" + k, np.array(v))
                                if isinstance(v, h5py.Dataset) else None)
    return out


shutil.rmtree(WORK, ignore_errors=True)
os.makedirs(WORK)
os.chdir(WORK)
# A small English text, deterministic (the tests do not depend on the fortunes package).
words = "the quick brown fox jumps over a lazy dog while seven wise owls watch from an old oak tree".split()
lines = []
for i in range(400):
    lines.append(" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(5 + i % 6)).capitalize() + ".")
open("corpus.txt", "w").write("\n".join(lines) + "\n")
open("other.txt", "w").write("\n".join(reversed(lines)) + "\n")

BASE = {"--task": "text", "--text": "corpus.txt", "--dim": "16", "--heads": "2", "--hidden": "16", "--experts": "4",
        "--layers": "2", "--seq-len": "16", "--batch-size": "4", "--steps": "12", "--warmup": "2", "--eval-every": "6",
        "--eval-batches": "2", "--log-every": "1", "--ckpt-every": "3", "--keep-last": "0", "--seed": "5",
        "--no-progress": None, "--noise-gates": None}


def train(**over):
    """`train` with BASE's flags, each overridden by over (--ckpt_dir= -> --ckpt-dir; None drops a flag)."""
    flags = dict(BASE)
    for k, v in over.items():
        flags["--" + k.replace("_", "-")] = v
    if flags.get("--model") == "dense":
        flags.pop("--noise-gates")
    out = ["train"]
    for k, v in flags.items():
        if v is False:
            continue
        out += [k] if v is None else [k, str(v)]
    return out


# 1. Uninterrupted vs stopped at 5 and resumed: equal bit for bit.
a = run(train(ckpt_dir="a", metrics="a.jsonl"))
check("held out from training (no --eval-text given)" in a.stderr_text, "the log says the end of --text is held out")
check("bits per byte" in a.stderr_text, "the log reports bits per byte")
run(train(ckpt_dir="b", metrics="b.jsonl", stop_at=5))
r = run(train(ckpt_dir="b", metrics="b.jsonl"))
check("resumed from" in r.stderr_text, "the second run resumes")
sa, sb = states("a/step-000000012.h5"), states("b/step-000000012.h5")
check(len(sa) > 0 and sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa),
      "stop at 5 + resume == uninterrupted, bit for bit (model and optimizer)")
ma = [json.loads(l) for l in open("a.jsonl")]
mb = [json.loads(l) for l in open("b.jsonl")]
strip = lambda m: [{k: v for k, v in r.items() if k not in ("ms_per_step", "tokens_per_s")} for r in m]
check(strip(ma) == strip(mb), "the resumed run's metrics equal the uninterrupted run's")
check(all(abs(r["bits_per_byte"] - r["loss"] / math.log(2)) < 1e-12 for r in ma), "bits_per_byte = loss / ln 2")
ev = [r for r in ma if "eval_loss" in r]
check(len(ev) == 2 and all(abs(r["eval_bits_per_byte"] - r["eval_loss"] / math.log(2)) < 1e-12 for r in ev),
      "eval_bits_per_byte at steps 6 and 12")
check(ma[-1]["loss"] < ma[0]["loss"], "the loss goes down")
# The file is part of the run's identity: another text does not resume the run.
one_line_error(train(ckpt_dir="a", text="other.txt", steps=14), "written by another model or task")
# --eval-text
e = run(train(eval_text="other.txt", steps=4, eval_every=0))
check("--eval-text 'other.txt'" in e.stderr_text, "the log names --eval-text")
# Dense baseline of equal active parameters.
d = run(train(model="dense", steps=2))
check("the st_moe model of these options" in d.stderr_text, "dense prints the st_moe count")

# 2. Generation.
ck = "a/step-000000012.h5"
g1 = run(["generate", ck, "--prompt", "The quick", "--tokens", "40", "--seed", "3"])
g2 = run(["generate", ck, "--prompt", "The quick", "--tokens", "40", "--seed", "3"])
g3 = run(["generate", ck, "--prompt", "The quick", "--tokens", "40", "--seed", "4"])
check(g1.stdout == g2.stdout and len(g1.stdout) == len("The quick") + 40 + 1, "same seed, same text")
check(g1.stdout.startswith(b"The quick"), "the output starts with the prompt")
check(g1.stdout != g3.stdout, "another seed, another text")
h1 = run(["generate", ck, "--prompt", "The quick", "--tokens", "30", "--temperature", "0", "--seed", "1"])
h2 = run(["generate", ck, "--prompt", "The quick", "--tokens", "30", "--temperature", "0", "--seed", "2"])
check(h1.stdout == h2.stdout, "greedy is the same whatever the seed")
k1 = run(["generate", ck, "--prompt", "The quick", "--tokens", "30", "--top-k", "1", "--seed", "7", "--no-prompt"])
check(k1.stdout == h1.stdout[len("The quick"):], "--top-k 1 is greedy; --no-prompt prints the new bytes only")
long_prompt = "x" * 30 + "The quick"  # context 16
lp = run(["generate", ck, "--prompt", long_prompt, "--tokens", "5", "--temperature", "0"])
check("longer than the model's context of 16" in lp.stderr_text, "a long prompt is noted on stderr")
sp = run(["generate", ck, "--prompt", long_prompt[-16:], "--tokens", "5", "--temperature", "0"])
check(lp.stdout[-6:] == sp.stdout[-6:], "a long prompt reads its last --seq-len bytes")

# 3. moegrad eval --text: every byte but the first predicted once, in consecutive windows of
# --seq-len 16; the leftover (n - 1) mod 16 bytes by the file's last 17 bytes, counting only those.
# Recomputed here from predict's logits on the same windows and batches (so the same routing draws).
S = 16


def text_windows(data):
    """Inputs, targets [W, S] and which positions count, as text_evaluation.h defines them."""
    full, rest = (len(data) - 1) // S, (len(data) - 1) % S
    starts = [w * S for w in range(full)] + ([len(data) - 1 - S] if rest else [])
    x = np.array([list(data[s:s + S]) for s in starts], dtype=np.int64)
    y = np.array([list(data[s + 1:s + S + 1]) for s in starts], dtype=np.int64)
    counted = np.ones(y.shape, dtype=bool)
    if rest:
        counted[-1, :S - rest] = False
    return x, y, counted


def numpy_eval(ckpt, path, batch):
    x, y, counted = text_windows(open(path, "rb").read())
    with h5py.File(path + ".h5", "w") as f:
        f["tokens"] = x
    run(["predict", ckpt, "--input", path + ".h5", "--output", path + "-pred.h5", "--batch-size", str(batch)])
    with h5py.File(path + "-pred.h5", "r") as f:
        logits = np.array(f["logits"], dtype=np.float64)
    top = logits.max(-1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    return float(nll[counted].mean()), float((logits.argmax(-1) == y)[counted].mean()), int(counted.sum()), len(x)


corpus = open("corpus.txt", "rb").read()
held = corpus[len(corpus) - max(len(corpus) // 10, S + 1):]  # the run's held-out end
open("held.txt", "wb").write(held)
open("held-exact.txt", "wb").write(held[:(len(held) - 1) // S * S + 1])  # no leftover
open("window.txt", "wb").write(held[:S + 1])  # one window
open("window1.txt", "wb").write(held[:S + 2])  # one window and one leftover byte
check((len(held) - 1) % S != 0, "the held-out part has a partial last window")
for name, batch in (("held.txt", 4), ("held.txt", 3), ("held-exact.txt", 4), ("window.txt", 4), ("window1.txt", 4)):
    tag = f"eval --text {name} --batch-size {batch}"
    data = open(name, "rb").read()
    args = ["eval", ck, "--text", name, "--output", name + ".json"] + (["--batch-size", str(batch)] if batch != 4 else [])
    p = run(args)
    check("bits per byte" in p.stdout_text and f"{len(data) - 1} predicted" in p.stdout_text,
          f"{tag}: prints bits per byte and the predicted count\n{p.stdout_text}")
    if p.returncode != 0:
        continue
    r = json.load(open(name + ".json"))
    loss, acc, count, windows = numpy_eval(ck, name, batch)
    print(f"{tag}: eval loss {r['loss']:.6f} ({r['bits_per_byte']:.4f} bits per byte), numpy {loss:.6f} "
          f"(relative difference {abs(r['loss'] - loss) / loss:.1e}); {count} bytes in {windows} windows")
    check(abs(r["loss"] - loss) <= 1e-5 * loss, f"{tag}: eval loss {r['loss']} = numpy {loss} from predict's logits")
    check(abs(r["bits_per_byte"] - r["loss"] / math.log(2)) < 1e-12, f"{tag}: bits_per_byte = loss / ln 2")
    check(abs(r["accuracy"] - acc) < 1e-9, f"{tag}: accuracy {r['accuracy']} = numpy {acc}")
    check(r["predicted_bytes"] == count == len(data) - 1 and r["bytes"] == len(data) and r["windows"] == windows
          and r["batches"] == -(-windows // batch) and r["seq_len"] == S,
          f"{tag}: counts {r['predicted_bytes']} bytes, {r['windows']} windows, {r['batches']} batches")
    check(r["last_window_counted"] == ((len(data) - 1) % S or S), f"{tag}: last window counts {r['last_window_counted']}")
    check(len(r["layers"]) == 2 and sum(r["layers"][0]["routed_per_expert"]) > 0, f"{tag}: routing of 2 MoE layers")
# The same bytes evaluated twice give the same figures (fixed routing draws per batch).
check(run(["eval", ck, "--text", "held.txt"]).stdout == run(["eval", ck, "--text", "held.txt"]).stdout,
      "eval --text is deterministic")

# 4. Bad inputs: one line each.
open("empty.txt", "w").close()
open("tiny.txt", "w").write("hello")
open("short.txt", "w").write("x" * 20)  # windows of 17 bytes: too short to hold out a part and train
one_line_error(train(text="missing.txt"), "--text 'missing.txt': no such file")
one_line_error(train(text="empty.txt"), "--text 'empty.txt' is empty")
one_line_error(train(text="tiny.txt"), "too short to hold out")
one_line_error(train(text="short.txt"), "too short to hold out")
one_line_error(train(eval_text="tiny.txt"), "shorter than one window of --seq-len + 1 = 17")
one_line_error(train(eval_text="missing.txt"), "--eval-text 'missing.txt': no such file")
one_line_error(["train", "--task", "text"], "--task text needs --text")
one_line_error(["train", "--text", "corpus.txt"], "--text needs --task text")
one_line_error(train(heads=3), "--heads")
one_line_error(["generate", ck, "--prompt", "", "--tokens", "3"], "--prompt must not be empty")
one_line_error(["generate", "missing.h5", "--prompt", "a"], "missing.h5")
one_line_error(["generate", ck, "--prompt", "a", "--temperature", "-1"], "--temperature")
run(["train", "--task", "sequence", "--steps", "1", "--dim", "8", "--hidden", "8", "--experts", "2", "--ckpt-dir", "seq",
     "--no-progress"])
one_line_error(["generate", "seq/step-000000001.h5", "--prompt", "a"], "not a language model")
one_line_error(["eval", "seq/step-000000001.h5", "--text", "corpus.txt"],
               "is a --task sequence model, not a language model (--task text): --text needs one")
one_line_error(["eval", ck, "--data", "held.txt.h5"], "is a language model (--task text): evaluate it on a text file "
               "with --text FILE, not --data")
one_line_error(["eval", ck, "--text", "missing.txt"], "--text 'missing.txt': no such file")
one_line_error(["eval", ck, "--text", "empty.txt"], "--text 'empty.txt' is empty")
one_line_error(["eval", ck, "--text", "tiny.txt"],
               "--text 'tiny.txt' has 5 bytes, shorter than one window of the checkpoint's --seq-len + 1 = 17 bytes")
open("window0.txt", "wb").write(held[:S])
one_line_error(["eval", ck, "--text", "window0.txt"], "has 16 bytes, shorter than one window")
one_line_error(["eval", ck, "--text", "corpus.txt", "--data", "held.txt.h5"], "excludes")
one_line_error(["eval", ck], "needs --data FILE.h5 (a model of tensors) or --text FILE (a language model)")
one_line_error(["eval", ck, "--text", "corpus.txt", "--batch-size", "-1"], "--batch-size")

# 5. Expert parallelism: mpirun -np 2 --expert-parallel 2 trains what 1 rank x 2 micro-batches does.
info = run(["info"]).stdout_text
if "MPI yes" in info and shutil.which("mpirun"):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_btl="self,vader",
               OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1",
               # Open MPI's own allocations are not ours to report (sanitizer builds).
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
    run(train(steps=6, ckpt_dir="ep1", grad_accum=2, noise_gates=False))
    p = subprocess.run(["mpirun", "-np", "2", BIN] + train(steps=6, ckpt_dir="ep2", expert_parallel=2, noise_gates=False),
                       capture_output=True, text=True, env=env, timeout=600)
    check(p.returncode == 0, f"mpirun -np 2 --task text --expert-parallel 2: exit {p.returncode}\n{p.stderr[-1500:]}")
    if p.returncode == 0:
        a, b = states("ep1/step-000000006.h5"), states("ep2/step-000000006.h5")
        a = {k: v for k, v in a.items() if k.startswith("model/")}
        diff = max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(b[k]))), 1e-30)) for k in a)
        check(diff < 1e-4, f"2 expert-parallel ranks = 1 rank x 2 micro-batches (max relative difference {diff:.2e})")
        print(f"expert parallel: max relative difference {diff:.2e}")
else:
    print("expert-parallel check skipped: no MPI in this build")

if failures:
    sys.exit(f"{len(failures)} failure(s)")
print("text language model: ok")
