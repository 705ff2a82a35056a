#!/usr/bin/env python3
"""A bad-input sweep of the `moegrad` program, as a new user or a reliability engineer would try it.

Usage:  check_bad_inputs.py MOEGRAD_BIN FIXTURE_DIR WORK_DIR [--list] [--only SUBSTRING] [-v]

Runs several hundred bad command lines, config files, layer specs, input files and checkpoints
against `moegrad train`, `moegrad layer`, `moegrad inspect` and `moegrad info`, each in a
fresh folder with a time limit, and sorts every outcome into one of:

  clear    exit 1 or 2, and stderr ends with one line "moegrad <command>: ..." that names the
           offending thing (the flag, key, dataset or file given with the case), with no
           library noise (HDF5 diagnostics, "terminate called", sanitizer reports, tracebacks)
  crash    killed by a signal, an abort or a sanitizer report
  hang     still running at the time limit
  silent   exit 0: the bad input was accepted
  unclear  any other failure: several error lines, noise, a message that does not name it

A few valid edge cases ride along (expected to succeed: `--flag=value`, `--steps 1e1`, a run
of fewer steps than the default warmup). Prints one line per case that is not as expected and
the counts; exits 1 unless every bad input was a clear error and every valid case succeeded.
Needs h5py and numpy (Debian python3-h5py, python3-numpy).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_layer_cli import write_case  # noqa: E402  (S.json, W.h5, I.h5 of a fixture)

TIME_LIMIT_S = 60
NOISE = ("HDF5-DIAG", "terminate called", "what():", "Traceback", "AddressSanitizer", "runtime error:",
         "LeakSanitizer", "Segmentation fault", "core dumped", "Assertion", "#0 ", "free(): ", "double free")

# A quick, valid training run that each train case changes.
TRAIN_BASE = ["--steps", "3", "--warmup", "1", "--eval-every", "0", "--eval-batches", "1", "--log-every", "1",
              "--no-progress", "--ckpt-every", "100"]


def base_without(extra):
    """TRAIN_BASE less the flags (and their values) that the case gives itself."""
    given = {a.split("=")[0] for a in extra if a.startswith("--")}
    out, i = [], 0
    while i < len(TRAIN_BASE):
        flag = TRAIN_BASE[i]
        takes_value = i + 1 < len(TRAIN_BASE) and not TRAIN_BASE[i + 1].startswith("--")
        if flag not in given:
            out += TRAIN_BASE[i:i + 1 + takes_value]
        i += 1 + takes_value
    return out


class Case:
    def __init__(self, group, name, argv, names, expect="error", setup=None, stdin=None):
        self.group, self.name, self.argv, self.names = group, name, argv, names
        self.expect, self.setup, self.stdin = expect, setup, stdin


def norm(s):
    return s.lower().replace("-", "_")


def classify(case, rc, err, timed_out):
    if timed_out:
        return "hang", "no exit within the time limit"
    lines = [line for line in err.splitlines() if line.strip()]
    noisy = [line for line in lines if any(n in line for n in NOISE)]
    if rc < 0 or rc in (134, 136, 139) or any("Sanitizer" in line or "runtime error:" in line for line in noisy):
        return "crash", f"exit {rc}: {(noisy or lines or [''])[-1][:200]}"
    if case.expect == "ok":
        return ("ok", "") if rc == 0 else ("unclear", f"valid input failed with exit {rc}: {(lines or [''])[-1][:300]}")
    if rc == 0:
        return "silent", "exit 0"
    command = case.argv[0] if case.argv else ""
    prefix = "moegrad: " if command not in ("train", "layer", "inspect", "info") else f"moegrad {command}: "
    last = lines[-1] if lines else ""
    errors = [line for line in lines if line.startswith("moegrad")]
    if rc not in (1, 2):
        return "unclear", f"exit {rc}: {last[:200]}"
    if noisy:
        return "unclear", f"library noise: {noisy[0][:200]}"
    if not last.startswith(prefix) or len(errors) != 1:
        return "unclear", f"expected one final line '{prefix}...', got {lines[-3:]}"
    if len(last) > 400:
        return "unclear", f"error line of {len(last)} characters"
    if case.names and not any(norm(n) in norm(last) for n in case.names):
        return "unclear", f"does not name {case.names}: {last[:300]}"
    return "clear", ""


def run_case(moegrad, case, work):
    d = os.path.join(work, case.group, case.name.replace("/", "_").replace(" ", "_")[:80])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    try:
        argv = case.setup(d) if case.setup else case.argv
    except Exception as e:  # the case could not be prepared: a bug of this script, reported as such
        return "unclear", f"setup failed: {type(e).__name__}: {e}", 0.0, ""
    case.argv = argv
    start = time.monotonic()
    try:
        p = subprocess.run([moegrad] + argv, cwd=d, capture_output=True, text=True, errors="replace",
                           timeout=TIME_LIMIT_S, stdin=subprocess.DEVNULL, start_new_session=True)
        rc, err, timed_out = p.returncode, p.stderr, False
    except subprocess.TimeoutExpired as e:
        rc, err, timed_out = None, (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or ""), True
    outcome, why = classify(case, rc if rc is not None else -1, err, timed_out)
    return outcome, why, time.monotonic() - start, err


# ---- train ---------------------------------------------------------------------------------

INT_FLAGS = ["steps", "batch-size", "seq-len", "dim", "hidden", "experts", "experts-outer", "top-n", "layers",
             "input-dim", "clusters", "vocab", "warmup", "grad-accum", "eval-every", "eval-batches", "log-every",
             "ckpt-every", "keep-last", "stop-at", "seed"]
POSITIVE_INT_FLAGS = ["steps", "batch-size", "seq-len", "dim", "hidden", "experts", "top-n", "layers", "input-dim",
                      "clusters", "vocab", "grad-accum", "eval-batches", "log-every", "ckpt-every"]
# Sizes whose largest int64 value cannot fit any machine's memory.
SIZE_FLAGS = ["batch-size", "seq-len", "dim", "hidden", "experts", "layers", "input-dim", "clusters", "vocab",
              "eval-batches"]
FLOAT_FLAGS = ["lr", "weight-decay", "momentum", "min-lr", "clip", "capacity-factor", "noise-mult",
               "balance-loss-coef", "router-z-loss-coef"]
NONNEGATIVE_FLOAT_FLAGS = ["lr", "weight-decay", "momentum", "min-lr", "clip", "capacity-factor",
                           "balance-loss-coef", "router-z-loss-coef"]


def train(group, name, extra, names, expect="error", setup=None, ckpt=True):
    base = base_without(extra) + (["--ckpt-dir", "ckpt", "--metrics", "metrics.jsonl"] if ckpt else [])
    return Case(group, name, ["train"] + base + extra, names, expect, setup)


def train_cases():
    cases = []
    for flag in INT_FLAGS:
        for value in ["abc", "1.5", "-1", "99999999999999999999", "", "nan", "inf", "1e300", "0x10", "3abc", " "]:
            cases.append(train("train-int", f"--{flag} {value!r}", [f"--{flag}", value], [flag]))
        cases.append(train("train-int", f"--{flag} missing value", [f"--{flag}"], [flag]))
    for flag in POSITIVE_INT_FLAGS:
        cases.append(train("train-int", f"--{flag} 0", [f"--{flag}", "0"], [flag]))
    for flag in SIZE_FLAGS:
        for value in ["9223372036854775807", "288230376151711744", "4294967297"]:
            task = ["--task", "sequence"] if flag == "vocab" else []  # the task that reads it
            cases.append(train("train-size", f"--{flag} {value}", task + [f"--{flag}", value],
                               [flag, "too large", "memory", "bytes"]))
    cases.append(train("train-size", "--vocab 1e9 sequence", ["--task", "sequence", "--vocab", "1000000000"],
                       ["vocab", "memory", "bytes", "too large"]))
    cases.append(train("train-size", "--dim 1e6 --hidden 1e6", ["--dim", "1000000", "--hidden", "1000000"],
                       ["dim", "hidden", "memory", "bytes", "too large"]))
    for flag in FLOAT_FLAGS:
        for value in ["nan", "inf", "-inf", "1e309", "abc", "", "1e300", "0x", "1,5"]:
            cases.append(train("train-float", f"--{flag} {value!r}", [f"--{flag}", value], [flag]))
    for flag in NONNEGATIVE_FLOAT_FLAGS:
        cases.append(train("train-float", f"--{flag} -1", [f"--{flag}", "-1"], [flag]))
    cases.append(train("train-float", "--lr 0", ["--lr", "0"], ["lr"]))
    cases.append(train("train-float", "--capacity-factor 0", ["--capacity-factor", "0"], ["capacity"]))
    cases.append(train("train-float", "--momentum 2", ["--optimizer", "sgd", "--momentum", "2"], ["momentum"]))
    for flag, values in {"task": ["bogus", "", "SEQUENCE"], "model": ["bogus", "", "moe"],
                         "optimizer": ["bogus", "", "lamb"],
                         "device": ["bogus", "", "cuda:-1", "cuda:99999999999999999999", "gpu", "cuda:0x"],
                         "resume": [""]}.items():
        for value in values:
            cases.append(train("train-choice", f"--{flag} {value!r}", [f"--{flag}", value], [flag]))
    cases.append(train("train-choice", "--device cuda (no GPU)", ["--device", "cuda"], ["device", "cuda"]))
    for argv, names in [(["--bogus"], ["bogus"]), (["-x"], ["-x"]), (["foo"], ["foo"]), (["--steps=abc"], ["steps"]),
                        (["--=3"], ["="]), (["--steps", "2", "--steps", "3"], ["steps"]), (["--no-steps"], ["steps"]),
                        (["--no-progress=3"], ["progress"]), (["--dropless=maybe"], ["dropless"]),
                        (["--config"], ["config"]), (["--help-me"], ["help"])]:
        cases.append(train("train-usage", " ".join(argv), argv, names))
    # Combinations that no single range catches.
    for name, argv, names in [
            ("min-lr above lr", ["--lr", "0.001", "--min-lr", "0.01"], ["min-lr", "min_lr"]),
            ("warmup above steps", ["--steps", "10", "--warmup", "100"], ["warmup"]),
            ("stop-at above steps", ["--steps", "10", "--stop-at", "100"], ["stop-at", "stop_at"]),
            ("top-n above experts", ["--experts", "4", "--top-n", "5"], ["top-n", "top_n", "experts"]),
            ("hierarchical outer not dividing", ["--model", "hierarchical", "--experts", "16", "--experts-outer", "3"],
             ["experts"]),
            ("noise-gates with lucidrains", ["--model", "lucidrains", "--noise-gates"], ["noise"]),
            ("noise-mult with lucidrains", ["--model", "lucidrains", "--noise-gates", "--noise-mult", "2"], ["noise"]),
            ("seq task vocab 1", ["--task", "sequence", "--vocab", "1"], ["vocab"])]:
        cases.append(train("train-combo", name, argv, names))
    cases.append(Case("train-combo", "stop-at without ckpt-dir",
                      ["train"] + TRAIN_BASE + ["--stop-at", "2"], ["stop-at", "stop_at", "ckpt"]))

    # Files the run writes or reads.
    def file_case(name, extra, names, prepare):
        def setup(d):
            prepare(d)
            return ["train"] + TRAIN_BASE + extra
        return Case("train-files", name, [], names, setup=setup)

    def touch(path, data=b""):
        with open(path, "wb") as f:
            f.write(data)
    cases += [
        file_case("ckpt-dir is a file", ["--ckpt-dir", "f"], ["f", "ckpt"], lambda d: touch(f"{d}/f", b"x")),
        file_case("ckpt-dir under a file", ["--ckpt-dir", "f/ckpt"], ["f/ckpt", "ckpt"], lambda d: touch(f"{d}/f")),
        file_case("ckpt-dir in /proc", ["--ckpt-dir", "/proc/moegrad-ckpt"], ["/proc/moegrad-ckpt"], lambda d: None),
        file_case("metrics is a directory", ["--metrics", "m"], ["m", "metrics"], lambda d: os.mkdir(f"{d}/m")),
        file_case("metrics in /proc", ["--metrics", "/proc/moegrad.jsonl"], ["/proc/moegrad.jsonl", "metrics"],
                  lambda d: None),
        file_case("resume missing file", ["--resume", "nope.h5"], ["nope.h5"], lambda d: None),
        file_case("resume a directory", ["--resume", "dir"], ["dir"], lambda d: os.mkdir(f"{d}/dir")),
        file_case("resume /dev/null", ["--resume", "/dev/null"], ["/dev/null"], lambda d: None),
        file_case("resume empty file", ["--resume", "e.h5"], ["e.h5"], lambda d: touch(f"{d}/e.h5")),
        file_case("resume text file", ["--resume", "t.h5"], ["t.h5"], lambda d: touch(f"{d}/t.h5", b"hello\n" * 100)),
    ]
    return cases


# ---- config files ----------------------------------------------------------------------------

def config_cases():
    contents = {
        "array": b"[]", "null": b"null", "number": b"3", "string": b'"steps"', "true": b"true",
        "empty": b"", "whitespace": b"  \n ", "open brace": b"{", "trailing comma": b'{"steps": 3,}',
        "single quotes": b"{'steps': 3}", "NaN literal": b'{"lr": NaN}', "comment": b'{"steps": 3 // x\n}',
        "steps string": b'{"steps": "abc"}', "steps float": b'{"steps": 1.5}', "steps huge": b'{"steps": 99999999999999999999}',
        "steps negative": b'{"steps": -3}', "steps bool": b'{"steps": true}', "steps null": b'{"steps": null}',
        "steps array": b'{"steps": [3]}', "steps object": b'{"steps": {"n": 3}}', "lr 1e999": b'{"lr": 1e999}',
        "lr string": b'{"lr": "fast"}', "lr negative": b'{"lr": -0.1}', "capacity 1e300": b'{"capacity_factor": 1e300}',
        "noise_mult 1e300": b'{"noise_mult": 1e300}', "seed negative": b'{"seed": -1}',
        "seed 2^64": b'{"seed": 18446744073709551616}', "keep_last 2^31": b'{"keep_last": 2147483648000000000000}',
        "unknown key": b'{"stepz": 3}', "nested unknown": b'{"model": {"dim": 3}}', "task number": b'{"task": 3}',
        "dropless string": b'{"dropless": "yes"}', "device number": b'{"device": 0}',
        "invalid utf8": b'{"task": "\xff\xfe"}', "bom": b'\xef\xbb\xbf{"steps": 3}x', "two objects": b'{} {}',
        "deep nesting": b"[" * 200000 + b"]" * 200000, "deep object": b'{"a":' * 100000 + b"1" + b"}" * 100000,
        "binary": bytes(range(256)) * 4, "huge string value": b'{"task": "' + b"x" * (3 << 20) + b'"}',
        "long key": b'{"' + b"k" * 100000 + b'": 1}',
    }
    cases = []
    for name, data in contents.items():
        def setup(d, data=data):
            with open(f"{d}/c.json", "wb") as f:
                f.write(data)
            return ["train", "--config", "c.json", "--ckpt-dir", "ckpt", "--no-progress"]
        cases.append(Case("config", name, [], ["c.json", "config"], setup=setup))

    def big_string(d):
        with open(f"{d}/c.json", "wb") as f:
            f.write(b'{"model": "' + b"m" * (60 << 20) + b'"}')
        return ["train", "--config", "c.json", "--no-progress"]
    cases.append(Case("config", "60 MB string value", [], ["c.json"], setup=big_string))
    for name, path in [("/dev/zero", "/dev/zero"), ("/dev/null", "/dev/null"), ("missing", "nope.json"),
                       ("directory", "."), ("/proc/self/mem", "/proc/self/mem")]:
        cases.append(Case("config", f"config {name}", ["train"] + TRAIN_BASE + ["--config", path],
                          [path if path != "." else "config", "config"]))
    return cases


# ---- layer -------------------------------------------------------------------------------

def layer_cases(fixture_dir):
    fixture = os.path.join(fixture_dir, "st_moe_train.h5")

    def files(d):
        return ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "I.h5", "--output", "O.h5", "--backward"]

    def base(d):
        with h5py.File(fixture, "r") as fx:
            write_case(fx, d)
        with open(f"{d}/S.json") as f:
            return json.load(f)

    def spec_case(name, change, names):
        def setup(d):
            spec = base(d)
            change(spec)
            with open(f"{d}/S.json", "w") as f:
                f.write(json.dumps(spec) if not isinstance(spec, bytes) else spec.decode())
            return files(d)
        return Case("layer-spec", name, [], names, setup=setup)

    def set_arg(key, value, where="args"):
        def change(spec):
            spec.setdefault(where, {})[key] = value
        return change

    cases = []
    for key, values in {"capacity_factor_train": [float("inf"), 1e300, -1.0, 0.0, "x", float("nan")],
                        "capacity_factor_eval": [float("inf"), -2.0],
                        "num_experts": [0, -1, 2**62, 1.5, "8", 2**70],
                        "dim": [0, -4, 2**40, 3.5], "gating_top_n": [0, 100, -1],
                        "balance_loss_coef": [float("nan"), -1.0], "router_z_loss_coef": [float("inf")],
                        "min_expert_capacity": [-1, 2**63], "expert_hidden_mult": [0, -2, 2**40],
                        "threshold_train": [float("nan"), -0.5], "straight_through_dispatch_tensor": ["yes"],
                        "bogus_arg": [1]}.items():
        for value in values:
            names = [key, key.replace("gating_", "")]  # TopNGating names top_n
            cases.append(spec_case(f"args.{key}={value!r}", set_arg(key, value), names))
    for key, values in {"noise_mult": [1e300, float("nan"), float("inf"), "x"], "noise_gates": [3, "yes"],
                        "bogus": [True]}.items():
        for value in values:
            cases.append(spec_case(f"forward.{key}={value!r}", set_arg(key, value, "forward"), [key]))
    for name, change, names in [
            ("module bogus", lambda s: s.update(module="st_moe.Bogus"), ["Bogus", "module"]),
            ("module missing", lambda s: s.pop("module"), ["module"]),
            ("module number", lambda s: s.update(module=3), ["module"]),
            ("args array", lambda s: s.update(args=[1]), ["args"]),
            ("forward string", lambda s: s.update(forward="x"), ["forward"]),
            ("extra top key", lambda s: s.update(weights="W.h5"), ["weights"])]:
        cases.append(spec_case(name, change, names))

    for name, content in [("spec array", b"[]"), ("spec null", b"null"), ("spec empty", b""), ("spec garbage", b"\x00\x01"),
                          ("spec deep", b"[" * 200000 + b"]" * 200000)]:
        def setup(d, content=content):
            base(d)
            with open(f"{d}/S.json", "wb") as f:
                f.write(content)
            return files(d)
        cases.append(Case("layer-spec", name, [], ["S.json", "spec"], setup=setup))

    def input_case(name, change, names, group="layer-input"):
        def setup(d):
            base(d)
            with h5py.File(f"{d}/I.h5", "a") as f:
                change(f)
            return files(d)
        return Case(group, name, [], names, setup=setup)

    def replace(name, value):
        def change(f):
            shape = f[name].shape if name in f else None
            data = value(shape) if callable(value) else value
            if name in f:
                del f[name]
            f[name] = data
        return change

    def with_value_at(name, v):
        def change(f):
            data = f[name][()].copy()
            data.flat[len(data.flat) // 2] = v
            del f[name]
            f[name] = data
        return change

    for ds in ["noise_uniform", "route_uniform"]:
        for v in [np.nan, 1.0, -0.1, np.inf, 2.0]:
            cases.append(input_case(f"{ds} holds {v}", with_value_at(ds, v), [ds]))
        cases.append(input_case(f"{ds} wrong shape", replace(ds, np.zeros((2, 2), np.float32)), [ds]))
        cases.append(input_case(f"{ds} int dtype", replace(ds, lambda s: np.zeros(s, np.int64)), [ds]))
    for v in [np.nan, np.inf, -np.inf]:
        cases.append(input_case(f"x holds {v}", with_value_at("x", v), ["x"]))
        cases.append(input_case(f"grad_output holds {v}", with_value_at("grad_output", v), ["grad_output"]))
    cases += [
        input_case("x missing", lambda f: f.__delitem__("x"), ["x"]),
        input_case("x rank 2", replace("x", np.zeros((4, 8), np.float32)), ["x", "input"]),
        input_case("x wrong dim", replace("x", lambda s: np.zeros(s[:-1] + (s[-1] + 1,), np.float32)), ["x", "input"]),
        input_case("x empty", replace("x", lambda s: np.zeros((0,) + s[1:], np.float32)), ["x", "input"]),
        input_case("x int64", replace("x", lambda s: np.zeros(s, np.int64)), ["x"]),
        input_case("x string", replace("x", "hello"), ["x"]),
        input_case("x a group", lambda f: (f.__delitem__("x"), f.create_group("x")), ["x"]),
        input_case("grad_output wrong shape", replace("grad_output", np.zeros((3,), np.float32)), ["grad_output"]),
        input_case("unknown dataset", replace("bogus", np.zeros((3,), np.float32)), ["bogus"]),
        input_case("x declared 2^28 x 2^28 x 16, never written",
                   lambda f: (f.__delitem__("x"), f.create_dataset("x", shape=(2**28, 2**28, 16), dtype="f4")),
                   ["x", "too large", "memory", "bytes"]),
        input_case("x declared 2^20 x 2^10 x 64 chunked, never written",
                   lambda f: (f.__delitem__("x"), f.create_dataset("x", shape=(2**20, 2**10, 64), dtype="f4",
                                                                   chunks=(1, 16, 64))),
                   ["x", "too large", "memory", "bytes", "allocated", "not written"]),
    ]

    def weights_case(name, change, names):
        def setup(d):
            base(d)
            with h5py.File(f"{d}/W.h5", "a") as f:
                change(f)
            return files(d)
        return Case("layer-weights", name, [], names, setup=setup)

    def first_key(f):
        keys = []
        f["model"].visititems(lambda k, v: keys.append(k) if isinstance(v, h5py.Dataset) else None)
        return "model/" + sorted(keys)[0]

    def drop_first(f):
        del f[first_key(f)]

    def reshape_first(f):
        k = first_key(f)
        data = f[k][()]
        del f[k]
        f[k] = data.reshape(-1)[:-1] if data.size > 1 else np.zeros((2, 2), data.dtype)

    def declared_first(f):
        k = first_key(f)
        shape = f[k].shape
        del f[k]
        f.create_dataset(k, shape=shape, dtype="f4", chunks=True)  # no chunk written

    cases += [weights_case("missing key", drop_first, ["model/", "missing"]),
              weights_case("wrong shape", reshape_first, ["shape"]),
              weights_case("extra key", lambda f: f.__setitem__("model/bogus.weight", np.zeros(3, np.float32)), ["bogus"]),
              weights_case("weight declared, never written", declared_first, ["allocated", "written", "model/"]),
              weights_case("no model group", lambda f: f.__delitem__("model"), ["model"])]

    for name, argv, names in [
            ("no options", ["layer"], ["--spec", "spec"]),
            ("unknown option", ["layer", "--bogus"], ["bogus"]),
            ("mode bogus", ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "I.h5", "--output", "O.h5",
                            "--mode", "test"], ["mode"]),
            ("seed negative", ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "I.h5", "--output", "O.h5",
                               "--seed", "-1"], ["seed"]),
            ("seed huge", ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "I.h5", "--output", "O.h5",
                           "--seed", "99999999999999999999"], ["seed"]),
            ("output in /proc", ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "I.h5", "--output",
                                 "/proc/O.h5"], ["/proc/O.h5"]),
            ("output is a directory", ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "I.h5", "--output",
                                       "."], ["output", "."]),
            ("input missing", ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "nope.h5", "--output",
                               "O.h5"], ["nope.h5"]),
            ("input is the spec", ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "S.json", "--output",
                                   "O.h5"], ["S.json"])]:
        def setup(d, argv=argv):
            base(d)
            return argv
        cases.append(Case("layer-usage", name, [], names, setup=setup))
    return cases


# ---- inspect and info --------------------------------------------------------------------------

def make_checkpoint(moegrad, d):
    subprocess.run([moegrad, "train", "--steps", "2", "--eval-every", "0", "--eval-batches", "1", "--no-progress",
                    "--ckpt-dir", "ck"], cwd=d, check=True, capture_output=True)
    return os.path.join(d, "ck", "step-000000002.h5")


def inspect_cases(moegrad):
    cases = []
    for name, argv, names in [("no argument", ["inspect"], ["inspect", "CKPT"]), ("missing", ["inspect", "nope.h5"], ["nope.h5"]),
                              ("directory", ["inspect", "."], ["."]), ("/dev/null", ["inspect", "/dev/null"], ["/dev/null"]),
                              ("two files", ["inspect", "a.h5", "b.h5"], ["b.h5", "a.h5"]),
                              ("bogus flag", ["inspect", "--bogus"], ["bogus"])]:
        cases.append(Case("inspect", name, argv, names))

    def damaged(name, damage):
        def setup(d):
            path = make_checkpoint(moegrad, d)
            with open(path, "r+b") as f:
                data = bytearray(f.read())
                damage(data)
                f.seek(0)
                f.truncate()
                f.write(bytes(data))
            return ["inspect", path]
        return Case("inspect", name, [], ["step-000000002.h5"], setup=setup)

    def flip(frac):
        def damage(data):
            i = int(len(data) * frac)
            data[i] ^= 0x20
        return damage
    for frac in [0.0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99]:
        cases.append(damaged(f"flip at {frac:.3f}", flip(frac)))
    for keep in [0.1, 0.5, 0.9, 0.999]:
        cases.append(damaged(f"truncated to {keep}", lambda data, keep=keep: data.__delitem__(slice(int(len(data) * keep), None))))
    cases.append(damaged("zeroed middle 4 KiB",
                         lambda data: data.__setitem__(slice(len(data) // 2, len(data) // 2 + 4096), bytes(4096))))
    cases.append(Case("info", "info --bogus", ["info", "--bogus"], ["bogus"]))
    cases.append(Case("info", "info extra", ["info", "extra"], ["extra"]))
    cases.append(Case("info", "unknown command", ["trian"], ["trian"]))
    return cases


def valid_cases(fixture_dir):
    def layer_ok(name, change):
        def setup(d):
            with h5py.File(os.path.join(fixture_dir, "st_moe_train.h5"), "r") as fx:
                write_case(fx, d)
            change(d)
            return ["layer", "--spec", "S.json", "--weights", "W.h5", "--input", "I.h5", "--output", "O.h5",
                    "--backward"]
        return Case("valid", name, [], [], expect="ok", setup=setup)

    def x_float16(d):  # float16 converts exactly to the weights' float32
        with h5py.File(f"{d}/I.h5", "a") as f:
            x = f["x"][()]
            del f["x"]
            f["x"] = x.astype(np.float16)

    def null_argument(d):  # null is Python's None: the original's default
        with open(f"{d}/S.json") as f:
            spec = json.load(f)
        spec["args"]["capacity_factor_train"] = None
        with open(f"{d}/S.json", "w") as f:
            json.dump(spec, f)
    return [
        layer_ok("layer x in float16", x_float16),
        layer_ok("layer argument null (the default)", null_argument),
        train("valid", "--flag=value", ["--steps=3", "--lr=0.001"], [], expect="ok"),
        train("valid", "--steps 1e1", ["--steps", "1e1"], [], expect="ok"),
        Case("valid", "steps below the default warmup", ["train", "--steps", "5", "--eval-every", "0", "--no-progress"],
             [], expect="ok"),
        Case("valid", "info --help", ["info", "--help"], [], expect="ok"),
        Case("valid", "train --help", ["train", "--help"], [], expect="ok"),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("moegrad")
    ap.add_argument("fixture_dir")
    ap.add_argument("work")
    ap.add_argument("--only", default="", help="run the cases whose group or name contains this")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case and its stderr's last line")
    a = ap.parse_args()
    moegrad = os.path.abspath(a.moegrad)
    os.makedirs(a.work, exist_ok=True)
    cases = (train_cases() + config_cases() + layer_cases(os.path.abspath(a.fixture_dir)) + inspect_cases(moegrad) +
             valid_cases(os.path.abspath(a.fixture_dir)))
    cases = [c for c in cases if a.only in c.group or a.only in c.name]
    if a.list:
        for c in cases:
            print(f"{c.group:14} {c.name}")
        return 0
    counts = {k: 0 for k in ("clear", "crash", "hang", "silent", "unclear", "ok")}
    slowest = (0.0, "")
    for c in cases:
        outcome, why, secs, err = run_case(moegrad, c, a.work)
        counts[outcome] += 1
        slowest = max(slowest, (secs, f"{c.group}: {c.name}"))
        if outcome not in ("clear", "ok"):
            print(f"{outcome.upper():8} {c.group}: {c.name}: {why}")
        elif a.verbose:
            last = [line for line in err.splitlines() if line.strip()]
            print(f"{outcome:8} {c.group}: {c.name}: {(last or [''])[-1][:160]}")
    bad = sum(1 for c in cases if c.expect == "error")
    good = len(cases) - bad
    print(f"bad inputs tried {bad}: clear error {counts['clear']}, crash {counts['crash']}, hang {counts['hang']}, "
          f"silent {counts['silent']}, unclear {counts['unclear']}; valid cases {good}: succeeded {counts['ok']}; "
          f"slowest {slowest[0]:.1f} s ({slowest[1]})")
    shutil.rmtree(a.work, ignore_errors=True)
    return 0 if counts["clear"] == bad and counts["ok"] == good else 1


if __name__ == "__main__":
    sys.exit(main())
