#!/usr/bin/env python3
"""End-to-end checks of `moegrad train` and `moegrad inspect` (h5py + numpy only):
exact resume through the CLI, a SIGKILL in the middle of a checkpoint write, a corrupted
checkpoint, the metrics file, the checkpoint layout as h5py sees it, and flag errors.

usage: check_train_cli.py MOEGRAD_BIN WORK_DIR
"""
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import h5py
import numpy as np

BIN, WORK = sys.argv[1], sys.argv[2]
SMALL = ["--dim", "8", "--hidden", "8", "--experts", "4", "--input-dim", "6", "--clusters", "3",
         "--batch-size", "4", "--seq-len", "6", "--steps", "8", "--warmup", "2", "--eval-every", "4",
         "--eval-batches", "1", "--log-every", "1", "--ckpt-every", "2", "--keep-last", "0",
         "--noise-gates", "--seed", "3"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def run(args, env=None, expect=0):
    e = dict(os.environ, **(env or {}))
    p = subprocess.run([BIN] + args, capture_output=True, text=True, env=e)
    if expect is not None and p.returncode != expect:
        failures.append(f"{' '.join(args)}: exit {p.returncode}, expected {expect}\n{p.stderr}")
        print("FAIL:", failures[-1])
    return p


def fresh(name):
    d = os.path.join(WORK, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def model_of(path):
    with h5py.File(path, "r") as f:
        return {k: f["model"][k][()] for k in f["model"]}


def digest(folder):
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as fh:
            h.update(name.encode() + fh.read())
    return h.hexdigest()


# 1. An uninterrupted run: checkpoints, metrics, progress lines (not a terminal).
a = fresh("full")
p = run(["train"] + SMALL + ["--ckpt-dir", f"{a}/ckpt", "--metrics", f"{a}/m.jsonl"])
check(p.stderr.startswith("config: {") and "moegrad train:" not in p.stderr,
      "start-up prints the resolved configuration on a line that does not read as an error")
check("step 8/8" in p.stderr and "eval at step 8" in p.stderr, "plain progress lines and the final evaluation")
check(sorted(os.listdir(f"{a}/ckpt")) == [f"step-00000000{s}.h5" for s in (2, 4, 6, 8)], "a checkpoint every 2 steps")
records = [json.loads(line) for line in open(f"{a}/m.jsonl")]
check([r["step"] for r in records] == list(range(1, 9)), "one metrics record per logged step")
for key in ("loss", "aux_loss", "balance_loss", "router_z_loss", "lr", "grad_norm", "layers", "ms_per_step"):
    check(all(key in r for r in records), f"metrics have '{key}'")
check(all(len(r["layers"][0]["tokens_per_expert"]) == 4 for r in records), "per-layer tokens per expert")
check("dropped_fraction" in records[0]["layers"][0] and "dead_experts" in records[0]["layers"][0], "routing stats")
check("eval_loss" in records[3] and "eval_loss" in records[7], "eval every 4 steps")

# 2. The checkpoint layout as the README documents it.
with h5py.File(f"{a}/ckpt/step-000000008.h5", "r") as f:
    check(f.attrs["format"] == "moegrad-checkpoint" and int(f.attrs["format_version"]) == 3, "format attributes")
    check(int(f.attrs["complete"]) == 1, "complete attribute")
    check(json.loads(f.attrs["config_json"])["experts"] == 4, "config_json")
    check("blocks.0.ff.moe.experts.experts.3.net.0.weight" in f["model"], "PyTorch-style keys under /model")
    check(f["model"]["blocks.0.ff.moe.experts.experts.3.net.0.weight"].shape == (16, 8), "per-expert shapes")
    check(f["model"]["in_proj.weight"].fletcher32, "datasets carry a checksum")
    check(int(f["train"]["step"][()]) == 8 and int(f["train"]["cursor"]["train"][()]) == 8, "step and cursor")
    check("in_proj.weight" in f["optimizer"] and "exp_avg" in f["optimizer"]["in_proj.weight"], "optimizer state by name")
    check(f["rng"]["model"].shape == (2,), "generator state")

# 3. `moegrad inspect`.
p = run(["inspect", f"{a}/ckpt/step-000000008.h5"])
check("step 8" in p.stdout and "in_proj.weight" in p.stdout, "inspect prints step and parameters")
# Natural order (experts.2 before experts.10) and aligned columns, on a model with 12 experts.
g = fresh("inspect")
run(["train", "--dim", "4", "--hidden", "4", "--experts", "12", "--input-dim", "4", "--clusters", "2", "--batch-size",
     "2", "--seq-len", "2", "--steps", "1", "--eval-batches", "1", "--ckpt-dir", g, "--no-progress"])
p = run(["inspect", f"{g}/step-000000001.h5"])
table = p.stdout.split("\n\n", 1)[1].splitlines()[:-1]
names = [row.split()[0] for row in table[1:]]
experts = [n for n in names if ".experts.experts." in n and n.endswith(".net.0.weight")]
check([int(n.split(".experts.experts.")[1].split(".")[0]) for n in experts] == list(range(12)),
      f"inspect sorts experts naturally: {experts}")
rows = [re.match(r"^  (\S+) +(\S+) +(\(.*\)|shape) +(\S+)$", row) for row in table]
check(all(rows), f"inspect rows: {table[:3]}")
if all(rows):  # dtype starts, shape and numel end at the same column on every row
    check(len({(m.start(2), m.end(3), m.end(4)) for m in rows}) == 1, f"inspect columns aligned: {table[:3]}")

# 4. --stop-at then --resume auto equals the uninterrupted run, bit for bit.
b = fresh("stopped")
run(["train"] + SMALL + ["--ckpt-dir", f"{b}/ckpt", "--stop-at", "3"])
p = run(["train"] + SMALL + ["--ckpt-dir", f"{b}/ckpt"])
check("resumed from" in p.stderr and "at step 3" in p.stderr, "resume auto picks the stop checkpoint")
full, resumed = model_of(f"{a}/ckpt/step-000000008.h5"), model_of(f"{b}/ckpt/step-000000008.h5")
check(full.keys() == resumed.keys() and all(np.array_equal(full[k], resumed[k]) for k in full), "stop + resume == uninterrupted")

# 5. SIGKILL in the middle of writing step 6's checkpoint: step 4 survives and the run resumes from it.
c = fresh("killed")
p = run(["train"] + SMALL + ["--ckpt-dir", f"{c}/ckpt"], env={"MOEGRAD_FAULT_KILL_IN_CHECKPOINT": "6"}, expect=None)
check(p.returncode == -signal.SIGKILL, f"the run was killed (exit {p.returncode})")
names = sorted(os.listdir(f"{c}/ckpt"))
check("step-000000004.h5" in names and "step-000000006.h5" not in names, f"the interrupted write left no step 6: {names}")
check(any(n.startswith(".step-000000006.h5.tmp-") for n in names), "the interrupted write left its temporary file")
before = model_of(f"{c}/ckpt/step-000000004.h5")
check(all(np.array_equal(before[k], model_of(f"{a}/ckpt/step-000000004.h5")[k]) for k in before), "step 4 intact")
p = run(["train"] + SMALL + ["--ckpt-dir", f"{c}/ckpt"])
check("step-000000004.h5 at step 4" in p.stderr, "resume auto continues from the last complete checkpoint")
check(not any(".tmp-" in n for n in os.listdir(f"{c}/ckpt")), "stale temporary removed at start-up")
resumed = model_of(f"{c}/ckpt/step-000000008.h5")
check(all(np.array_equal(full[k], resumed[k]) for k in full), "killed + resumed == uninterrupted")

# 6. A corrupted checkpoint stops the run with one line, and no checkpoint changes.
d = fresh("corrupt")
shutil.copytree(f"{a}/ckpt", f"{d}/ckpt")
target = f"{d}/ckpt/step-000000008.h5"
with h5py.File(target, "r") as f:
    info = f["model"]["in_proj.weight"].id.get_chunk_info(0)
with open(target, "r+b") as fh:
    fh.seek(info.byte_offset + 8)
    fh.write(b"\xde\xad\xbe\xef")
state = digest(f"{d}/ckpt")
p = run(["train"] + SMALL + ["--ckpt-dir", f"{d}/ckpt", "--resume", target], expect=1)
last = p.stderr.strip().splitlines()[-1]
check(last.startswith("moegrad train: ") and "checksum mismatch" in last and "step-000000008.h5" in last,
      f"one line naming the file and the checksum: {last}")
check(digest(f"{d}/ckpt") == state, "a failed resume touches no checkpoint")
with open(f"{d}/not.h5", "w") as fh:
    fh.write("hello")
p = run(["inspect", f"{d}/not.h5"], expect=1)
check("not an HDF5 file" in p.stderr, "inspect names a non-HDF5 file")

# 7. --config FILE.json, with command-line flags taking precedence.
cfg = os.path.join(WORK, "config.json")
with open(cfg, "w") as fh:
    json.dump({"steps": 2, "experts": 4, "hidden": 8, "dim": 8, "lr": 0.01, "warmup": 0}, fh)
p = run(["train", "--config", cfg, "--lr", "0.02", "--no-progress", "--resume", "none"])
resolved = json.loads(p.stderr.splitlines()[0].split("config: ", 1)[1])
check(resolved["steps"] == 2 and resolved["experts"] == 4 and resolved["lr"] == 0.02, f"config file + flags: {resolved}")
with open(cfg, "w") as fh:
    json.dump({"stepz": 2}, fh)
p = run(["train", "--config", cfg], expect=2)
check("unknown key 'stepz'" in p.stderr and cfg in p.stderr, "unknown key in the config file, naming it")

# 8. Flag errors: one line, exit 2 for every usage mistake (kind, range, unknown flag, bad
# config file), before any work.
def usage_error(args, needles, what):
    p = run(["train"] + args, expect=2)
    lines = p.stderr.strip().splitlines()
    check(len(lines) == 1 and lines[0].startswith("moegrad train: ") and len(lines[0]) < 300,
          f"{what}: one short line, got {p.stderr[:400]!r}")
    for n in needles:
        check(n in p.stderr, f"{what}: message names {n!r}: {p.stderr.strip()[:300]!r}")
    return p


usage_error(["--lr", "-1"], ["--lr must be > 0, got -1"], "negative --lr")
usage_error(["--bogus"], ["unknown option '--bogus'"], "unknown flag")
usage_error(["--steps", "many"], ["--steps needs an integer, got 'many'"], "non-numeric value")
usage_error(["--steps", "0"], ["--steps must be >= 1, got 0"], "--steps 0 (same class as --steps abc)")
usage_error(["--steps=0"], ["--steps must be >= 1, got 0"], "--steps=0")
usage_error(["--steps", "1.5"], ["--steps needs an integer, got '1.5'"], "fractional integer")
usage_error(["--model", "sparse"], ["--model must be one of", "'sparse'"], "unknown model")
usage_error(["--keep-last", "4294967297"], ["--keep-last must be <= 1000000, got 4294967297"], "--keep-last 2^32+1")
usage_error(["--keep-last", "2147483648"], ["--keep-last must be <= 1000000, got 2147483648"], "--keep-last 2^31")
usage_error(["--capacity-factor", "inf"], ["--capacity-factor must be a finite number, got inf"], "infinite factor")
usage_error(["--capacity-factor", "1e300"], ["--capacity-factor must be <= 1e+06"], "huge factor")
usage_error(["--capacity-factor", "nan"], ["--capacity-factor must be a finite number"], "NaN factor")
usage_error(["--min-lr", "0.1", "--lr", "0.01"], ["--min-lr must be <= --lr"], "--min-lr above --lr")
usage_error(["--balance-loss-coef", "-1"], ["--balance-loss-coef must be >= 0, got -1"], "negative balance coef")
usage_error(["--router-z-loss-coef=-0.5"], ["--router-z-loss-coef must be >= 0"], "negative z-loss coef")
usage_error(["--noise-mult", "1e300"], ["--noise-mult must be <= 1e+06"], "huge noise multiplier")
usage_error(["--batch-size", "9223372036854775807"], ["--batch-size must be <="], "int64-max batch")
usage_error(["--seed", "-3"], ["--seed", "-3"], "negative seed")
usage_error(["--noise-gates", "--model", "lucidrains"], ["--noise-gates needs --model st_moe"], "noise gates ignored")
usage_error(["--warmup", "30", "--steps", "10"], ["--warmup must be <= --steps = 10, got 30"], "explicit warmup > steps")
usage_error(["--lr"], ["--lr needs a value"], "missing value")
usage_error(["--steps", "3", "--steps", "4"], ["--steps is given twice"], "repeated flag")
usage_error(["stray"], ["unexpected argument 'stray'"], "positional argument")
usage_error(["--progress=maybe"], ["--progress takes no value"], "a value given to a switch")
usage_error(["--no-progress=1"], ["--no-progress takes no value"], "a value given to a negated switch")

# --config files: a JSON object of at most 1 MiB; anything else stops at once naming the file
# and never starts a default run (which would resume and rotate the folder's checkpoints).
e = fresh("config-errors")
for text, needle in (("[]", "got an array"), ("null", "got null"), ("3", "got an integer"),
                     ('{"steps": 1.5}', "'steps': expected an integer, got 1.5"),
                     ('{"steps": 0}', "'steps': must be >= 1, got 0"),
                     ('{"capacity_factor": 1e400}', "number overflow"),
                     ('{"steps": 2, "steps": 3}', "duplicate key 'steps'"),
                     ('{"steps": ', "line 1, column 11")):
    path = os.path.join(e, "c.json")
    with open(path, "w") as fh:
        fh.write(text)
    usage_error(["--config", path, "--ckpt-dir", f"{e}/ckpt"], [path, needle], f"config {text!r}")
    check(not os.path.exists(f"{e}/ckpt"), f"config {text!r} started no run")
usage_error(["--config", "/dev/zero"], ["'/dev/zero': not a regular file"], "config /dev/zero")
usage_error(["--config", e], [f"'{e}': is a directory"], "config directory")
usage_error(["--config", f"{e}/missing.json"], ["missing.json", "No such file"], "config missing")
big = os.path.join(e, "big.json")
with open(big, "w") as fh:
    fh.write('{"metrics": "' + "x" * 60_000_000 + '"}')
usage_error(["--config", big], ["big.json", "larger than 1048576 bytes"], "60 MB config")
with open(big, "w") as fh:  # a long value in an error message is elided
    fh.write('{"model": "' + "y" * 500_000 + '"}')
usage_error(["--config", big], ["'model': must be one of", "... (500000 bytes)"], "long value elided")
os.remove(big)
# A file value of 1e3 for an integer is 1000; a flag overrides the file.
with open(cfg, "w") as fh:
    json.dump({"steps": 1e3, "warmup": 0, "log_every": 5}, fh)
p = run(["train", "--config", cfg, "--steps=2", "--no-progress", "--resume", "none"])
resolved = json.loads(p.stderr.splitlines()[0].split("config: ", 1)[1])
check(resolved["steps"] == 2 and resolved["log_every"] == 5, f"--steps=2 overrides the file: {resolved}")

# `--steps 10` alone works: the default warmup is min(20, steps / 10).
p = run(["train", "--steps", "10", "--dim", "8", "--hidden", "8", "--experts", "4", "--no-progress", "--resume", "none"])
resolved = json.loads(p.stderr.splitlines()[0].split("config: ", 1)[1])
check(resolved["warmup"] == 1, f"default warmup for --steps 10: {resolved['warmup']}")
p = run(["train", "--steps", "1e3", "--stop-at", "1", "--ckpt-dir", f"{e}/ck1e3", "--dim", "8", "--hidden", "8",
         "--experts", "4", "--no-progress"])
resolved = json.loads(p.stderr.splitlines()[0].split("config: ", 1)[1])
check(resolved["steps"] == 1000 and resolved["warmup"] == 20, f"--steps 1e3: {resolved['steps']}, {resolved['warmup']}")

# info and inspect take no stray flags; --help is help.
p = run(["info", "--bogus"], expect=2)
check(p.stderr.strip() == "moegrad info: unknown option '--bogus' (see moegrad info --help)", f"info --bogus: {p.stderr!r}")
p = run(["info", "--help"])
check("Usage: moegrad info" in p.stdout and "cuda devices" not in p.stdout, "info --help prints help")
p = run(["inspect"], expect=2)
check("CKPT.h5" in p.stderr, "inspect without a file")
p = run(["inspect", "--help"])
check("Usage: moegrad inspect" in p.stdout, "inspect --help prints help")

help_text = run(["train", "--help"]).stdout
# Every configuration key is documented in --help (the start-up line prints them all).
start = run(["train", "--steps", "1", "--warmup", "0", "--no-progress", "--resume", "none"]).stderr
config = json.loads(start.splitlines()[0].split("config: ", 1)[1])
for key, value in config.items():
    flag = "--" + key.replace("_", "-")
    check(flag in help_text or (isinstance(value, bool) and "--no-" + flag[2:] in help_text), f"--help documents {flag}")

# 9. Devices. Without a GPU, --device cuda stops at once with one line and creates nothing; with
# one, a GPU run stopped at step 4 resumes on the CPU (and the reverse), and its checkpoint
# holds what the CPU run's holds, to rounding.
gpus = int(next(l for l in run(["info"]).stdout.splitlines() if "cuda devices" in l).split(":")[1])
p = run(["train", "--device", "tpu"], expect=2)
check("--device must be cpu, cuda or cuda:N, got 'tpu'" in p.stderr, "bad --device value")
d = fresh("device")
if gpus == 0:
    p = run(["train", "--device", "cuda", "--ckpt-dir", f"{d}/ckpt", "--metrics", f"{d}/m.jsonl"], expect=1)
    lines = p.stderr.strip().splitlines()
    check(len(lines) == 1 and lines[0].startswith("moegrad train: [train] --device cuda:0 but no CUDA device is present"),
          f"--device cuda without a GPU: {p.stderr!r}")
    check(not os.path.exists(f"{d}/ckpt") and not os.path.exists(f"{d}/m.jsonl"), "--device cuda failed before any work")
else:
    for first, second in (("cuda", "cpu"), ("cpu", "cuda")):
        ck = f"{d}/{first}-{second}"
        run(["train"] + SMALL + ["--no-progress", "--device", first, "--ckpt-dir", ck, "--stop-at", "4"])
        p = run(["train"] + SMALL + ["--no-progress", "--device", second, "--ckpt-dir", ck])
        check("at step 4" in p.stderr, f"{first} checkpoint resumed on {second}: {p.stderr[-300:]!r}")
    on_gpu, on_cpu = model_of(f"{d}/cuda-cpu/step-000000004.h5"), model_of(f"{d}/cpu-cuda/step-000000004.h5")
    check(sorted(on_gpu) == sorted(on_cpu), "GPU and CPU checkpoints hold the same keys")
    for k in on_cpu:
        check(np.allclose(on_gpu[k], on_cpu[k], rtol=1e-3, atol=1e-5), f"GPU and CPU agree on {k} after 4 steps")

if failures:
    print(f"{len(failures)} check(s) failed")
    sys.exit(1)
print("all train CLI checks passed")
