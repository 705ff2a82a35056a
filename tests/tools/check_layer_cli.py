#!/usr/bin/env python3
"""End-to-end test of `moegrad layer` against every PyTorch reference fixture.

Usage:  check_layer_cli.py MOEGRAD_BIN FIXTURE_DIR WORK_DIR

For each tests/reference/fixtures/*.h5 it writes the files a user would (S.json from the
fixture's module/args_json/forward_json, W.h5 from /model, I.h5 with x, importance,
grad_output and the recorded draws), runs `moegrad layer --backward --mode <mode>`, and
compares O.h5 with the fixture: outputs and losses (rtol 1e-5), routing exactly
(dispatch != 0), every gradient (rtol 1e-4). Then it checks the error cases (one line
"moegrad layer: ..." naming the offending thing, non-zero exit, no output file) and a few
behaviours (forward only, --seed, default grad_output). Needs only h5py and numpy (Debian
python3-h5py, python3-numpy). Prints one line per check; exits 1 if any failed.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np

OUTPUT_RTOL, GRAD_RTOL = 1e-5, 1e-4


class Checks:
    def __init__(self):
        self.failed = []

    def __call__(self, name, problems):
        problems = [p for p in problems if p]
        print(("FAIL " if problems else "ok   ") + name)
        for p in problems:
            print("       " + p)
        if problems:
            self.failed.append(name)


def run(moegrad, args, cwd=None):
    p = subprocess.run([moegrad, "layer"] + args, cwd=cwd, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def close(name, got, want, rtol, atol_rel):
    """None when got matches want: same shape, |got - want| <= atol + rtol |want| elementwise,
    atol a small fraction of want's largest magnitude (as the C++ parity tests)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape}, expected {want.shape}"
    atol = atol_rel * max(float(np.abs(want).max()) if want.size else 0.0, 1e-3)
    bad = ~(np.abs(got - want) <= atol + rtol * np.abs(want))
    if bad.any():
        i = np.unravel_index(np.argmax(np.abs(got - want) * bad), got.shape)
        return f"{name}: {int(bad.sum())} of {got.size} elements differ, e.g. at {i}: {got[i]} vs {want[i]}"
    return None


def spec_of(fx):
    module = fx.attrs["module"]
    if module.startswith("lmoe."):
        module = "lucidrains." + module[len("lmoe."):]
    return {"module": module, "args": json.loads(fx.attrs["args_json"]),
            "forward": json.loads(fx.attrs["forward_json"])}


def write_case(fx, d):
    """S.json, W.h5 and I.h5 of one fixture, in directory d."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "S.json"), "w") as f:
        json.dump(spec_of(fx), f, indent=2)
    with h5py.File(os.path.join(d, "W.h5"), "w") as w:
        fx.copy("model", w)
    names = json.loads(fx.attrs["inputs_json"]) + ["grad_output"]
    for draw, _sampler, _shape in json.loads(fx.attrs["draws_json"]):
        names.append("gumbel_noise" if draw == "gumbel_exponential" else draw)
    with h5py.File(os.path.join(d, "I.h5"), "w") as i:
        for name in names:
            i[name] = fx[name][()]


def files(d):
    return ["--spec", f"{d}/S.json", "--weights", f"{d}/W.h5", "--input", f"{d}/I.h5", "--output", f"{d}/O.h5"]


def cuda_devices(moegrad):
    """The CUDA devices `moegrad info` reports (0 in a CPU-only build)."""
    out = subprocess.run([moegrad, "info"], capture_output=True, text=True, check=True).stdout
    return int(next(line for line in out.splitlines() if "cuda devices" in line).split(":")[1])


def check_fixture(moegrad, path, work, device="cpu"):
    name = os.path.splitext(os.path.basename(path))[0]
    d = os.path.join(work, name if device == "cpu" else f"{name}_{device}")
    problems = []
    with h5py.File(path, "r") as fx:
        write_case(fx, d)
        mode = fx.attrs["mode"]
        rc, out, err = run(moegrad, files(d) + ["--backward", "--mode", mode, "--device", device])
        if rc != 0:
            return name, [f"exit {rc}: {err.strip()}"]
        lines = err.strip().splitlines()
        problems.append(None if len(lines) == 1 and lines[0].startswith("moegrad layer: ") else
                        f"expected one summary line on stderr, got {err!r}")
        with h5py.File(f"{d}/O.h5", "r") as o:
            outputs = json.loads(fx.attrs["outputs_json"])
            written = sorted(k for k in o.keys() if k != "grad")
            problems.append(None if written == sorted(outputs) else f"O.h5 holds {written}, expected {sorted(outputs)}")
            for key in outputs:
                if key not in o:
                    continue
                if key == "dispatch":
                    same = np.array_equal(o[key][()] != 0, fx[key][()] != 0)
                    problems.append(None if same else "dispatch != 0 differs (routing)")
                problems.append(close(key, o[key][()], fx[key][()], OUTPUT_RTOL, 1e-6))
            want_grads, got_grads = [], []
            fx["grad"].visititems(lambda k, v: want_grads.append(k) if isinstance(v, h5py.Dataset) else None)
            if "grad" in o:
                o["grad"].visititems(lambda k, v: got_grads.append(k) if isinstance(v, h5py.Dataset) else None)
            problems.append(None if sorted(got_grads) == sorted(want_grads) else
                            f"grads {sorted(got_grads)}, expected {sorted(want_grads)}")
            for key in want_grads:
                if key in got_grads:
                    problems.append(close("grad/" + key, o["grad/" + key][()], fx["grad/" + key][()], GRAD_RTOL, 1e-5))
            problems.append(close("loss_value", o.attrs.get("loss_value", np.nan), fx.attrs["loss_value"], 1e-5, 1e-6))
            for attr, want in (("module", spec_of(fx)["module"]), ("mode", mode), ("producer", "moegrad layer"),
                               ("device", "cuda:0" if device == "cuda" else device)):
                got = o.attrs.get(attr)
                problems.append(None if got == want else f"attribute {attr} = {got!r}, expected {want!r}")
    return name, problems


# ---- error cases, on a copy of one fixture's files -------------------------------------------

def check_errors(moegrad, fixture_dir, work, checks):
    base = os.path.join(work, "errors")
    with h5py.File(os.path.join(fixture_dir, "st_moe_train.h5"), "r") as fx:
        write_case(fx, base)
        good_spec = spec_of(fx)

    def case(name, want_rc, needles, spec=None, weights=None, inputs=None, args=None):
        d = os.path.join(work, "error_" + "".join(c if c.isalnum() else "_" for c in name))
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(base, d)
        if spec is not None:
            with open(f"{d}/S.json", "w") as f:
                json.dump(spec, f)
        if weights is not None:
            with h5py.File(f"{d}/W.h5", "a") as w:
                weights(w)
        if inputs is not None:
            with h5py.File(f"{d}/I.h5", "a") as i:
                inputs(i)
        rc, out, err = run(moegrad, files(d) + ["--backward"] if args is None else args(d))
        lines = err.strip().splitlines()
        problems = [
            None if rc == want_rc else f"exit {rc}, expected {want_rc}",
            None if len(lines) == 1 and lines[0].startswith("moegrad layer: ") else f"stderr is not one line: {err!r}",
            None if not os.path.exists(f"{d}/O.h5") else "O.h5 was written",
        ] + [None if n in err else f"message does not name {n!r}: {err.strip()!r}" for n in needles]
        checks(f"error: {name} -> {err.strip()}", problems)

    def respec(**change):
        s = json.loads(json.dumps(good_spec))
        for k, v in change.items():
            if k == "args_extra":
                s["args"].update(v)
            else:
                s[k] = v
        return s

    def reshape_weight(w):
        t = w["model/gate.to_gates.weight"][()]
        del w["model/gate.to_gates.weight"]
        w["model/gate.to_gates.weight"] = t.T.copy()

    def replace_input(name, value):
        def f(i):
            del i[name]
            i[name] = value
        return f

    case("unknown module", 1, ["st_moe.Nope", "st_moe.MoE"], spec=respec(module="st_moe.Nope"))
    case("unknown argument", 1, ["bogus_arg"], spec=respec(args_extra={"bogus_arg": 1}))
    case("unknown spec key", 1, ["forwrd"], spec=dict(respec(), forwrd={}))
    case("unknown forward keyword", 1, ["noise_mul"], spec=respec(forward={"noise_mul": 0.5}))
    case("missing weight", 1, ["gate.to_gates.weight", "missing"], weights=lambda w: w.__delitem__("model/gate.to_gates.weight"))
    case("extra weight", 1, ["extra.weight", "unexpected"], weights=lambda w: w.create_dataset("model/extra.weight", data=np.zeros(3, np.float32)))
    case("mis-shaped weight", 1, ["gate.to_gates.weight", "(16, 4)", "(4, 16)"], weights=reshape_weight)
    case("no /model group", 1, ["/model"], weights=lambda w: w.move("model", "weights"))
    case("unknown dataset", 1, ["'noise'", "allowed", "route_uniform"], inputs=lambda i: i.create_dataset("noise", data=np.zeros(3, np.float32)))
    case("draw the module does not read", 1, ["gumbel_noise", "st_moe.MoE"], inputs=lambda i: i.create_dataset("gumbel_noise", data=np.zeros((2, 10, 4), np.float32)))
    case("missing x", 1, ["'x'"], inputs=lambda i: i.__delitem__("x"))
    case("mis-shaped draw", 1, ["route_uniform", "(2, 2, 10)"], inputs=replace_input("route_uniform", np.zeros((2, 10), np.float32)))
    case("mis-shaped grad_output", 1, ["grad_output", "(2, 10, 16)"], inputs=replace_input("grad_output", np.zeros((2, 10), np.float32)))
    case("integer x", 1, ["'x'", "float32"], inputs=replace_input("x", np.zeros((2, 10, 16), np.int64)))
    case("missing input file", 1, ["nowhere.h5"], args=lambda d: files(d)[:4] + ["--input", f"{d}/nowhere.h5", "--output", f"{d}/O.h5"])
    case("missing --input", 2, ["--input", "--help"], args=lambda d: files(d)[:4] + ["--output", f"{d}/O.h5"])
    case("--mode bogus", 2, ["bogus", "--mode"], args=lambda d: files(d) + ["--mode", "bogus"])
    case("unknown option", 2, ["--frobnicate"], args=lambda d: files(d) + ["--frobnicate"])
    if cuda_devices(moegrad) == 0:  # with a GPU, main() runs every fixture on it instead
        case("--device cuda", 1, ["--device cuda:0 but no CUDA device is present"],
             args=lambda d: files(d) + ["--device", "cuda"])
    case("--device bogus", 2, ["tpu"], args=lambda d: files(d) + ["--device", "tpu"])
    case("--seed bogus", 2, ["--seed", "-3"], args=lambda d: files(d) + ["--seed", "-3"])
    case("--mode=bogus", 2, ["--mode must be train or eval", "bogus"], args=lambda d: files(d) + ["--mode=bogus"])

    # Numbers out of range in the spec: one line naming the file and the path in it.
    def overflowing_spec(d):  # JSON cannot say inf; 1e400 is beyond a double
        with open(f"{d}/S.json", "w") as f:
            f.write(json.dumps(good_spec).replace('"capacity_factor_train": 1.25', '"capacity_factor_train": 1e400'))
        return files(d)
    case("capacity_factor_train 1e400", 1, ["S.json", "number overflow parsing '1e400'"], args=overflowing_spec)
    for key, value, needle in (("capacity_factor_train", 1e300, "must be in (0, 1e+06]"),
                               ("capacity_factor_eval", 0, "must be in (0, 1e+06]"),
                               ("num_experts", 2.5, "expected an integer, got 2.5"),
                               ("num_experts", 2 ** 40, "must be in [1, 16777216]"),
                               ("dim", -1, "must be in [1, 16777216]"),
                               ("balance_loss_coef", -1, "must be in [0, 1e+06]"),
                               ("router_z_loss_coef", "big", "expected a number, got a string")):
        case(f"args {key} = {value}", 1, ["S.json", f"'args.{key}'", needle], spec=respec(args_extra={key: value}))
    case("noise_mult 1e300", 1, ["S.json", "'forward.noise_mult'", "must be in [0, 1e+06]"],
         spec=respec(forward={"noise_gates": True, "noise_mult": 1e300}))
    case("spec is an array", 1, ["S.json", "expected a JSON object"], spec=[])
    case("spec is a directory", 1, ["is a directory"],
         args=lambda d: ["--spec", d] + files(d)[2:])

    # Injected tensors: draws in [0, 1), the rest finite; the message names the dataset and element.
    def poke(name, index, value):
        def f(i):
            t = i[name][()]
            t[index] = value
            del i[name]
            i[name] = t
        return f
    case("NaN draw", 1, ["I.h5", "'route_uniform'", "[0, 1)", "[1, 0, 3]", "nan"],
         inputs=poke("route_uniform", (1, 0, 3), np.nan))
    case("draw of 1", 1, ["'noise_uniform'", "[0, 1)", "[0, 2, 1]"], inputs=poke("noise_uniform", (0, 2, 1), 1.0))
    case("negative draw", 1, ["'route_uniform'", "-0.5"], inputs=poke("route_uniform", (0, 0, 0), -0.5))
    case("NaN grad_output", 1, ["'grad_output'", "finite", "[1, 2, 3]"], inputs=poke("grad_output", (1, 2, 3), np.nan))
    case("infinite x", 1, ["'x'", "finite", "inf"], inputs=poke("x", (0, 0, 0), np.inf))


# ---- behaviours -----------------------------------------------------------------------------

def grad_keys(o):
    keys = []
    o["grad"].visititems(lambda k, v: keys.append("grad/" + k) if isinstance(v, h5py.Dataset) else None)
    return keys


def check_behaviours(moegrad, fixture_dir, work, checks):
    d = os.path.join(work, "behaviours")
    with h5py.File(os.path.join(fixture_dir, "st_moe_train.h5"), "r") as fx:
        write_case(fx, d)

    # Forward only: outputs, no gradients.
    rc, _, err = run(moegrad, files(d))
    with h5py.File(f"{d}/O.h5", "r") as o:
        checks("forward only writes outputs and no grad/", [
            None if rc == 0 else f"exit {rc}: {err.strip()}",
            None if sorted(o.keys()) == ["aux_loss", "balance_loss", "output", "router_z_loss"] else f"keys {sorted(o.keys())}",
            None if "grad_output unused" in err else f"no note about the unused grad_output: {err.strip()!r}"])

    # grad_output defaults to ones.
    with h5py.File(f"{d}/I.h5", "a") as i:
        i["grad_output"][...] = 1.0
    rc1, _, err1 = run(moegrad, files(d) + ["--backward"])
    os.replace(f"{d}/O.h5", f"{d}/O_ones.h5")
    with h5py.File(f"{d}/I.h5", "a") as i:
        del i["grad_output"]
    rc2, _, err2 = run(moegrad, files(d) + ["--backward"])
    with h5py.File(f"{d}/O.h5", "r") as dflt, h5py.File(f"{d}/O_ones.h5", "r") as ones:
        checks("without grad_output the backward uses ones", [
            None if rc1 == 0 and rc2 == 0 else f"exit {rc1}/{rc2}: {err1.strip()} {err2.strip()}",
            close("grad/x", dflt["grad/x"][()], ones["grad/x"][()], 0, 0)])

    # Draws not given come from --seed: same seed, same output.
    with h5py.File(f"{d}/I.h5", "a") as i:
        del i["noise_uniform"], i["route_uniform"]
    outs = []
    for seed in ("7", "7"):
        rc, _, err = run(moegrad, files(d) + ["--seed", seed])
        with h5py.File(f"{d}/O.h5", "r") as o:
            outs.append((rc, o["output"][()], o.attrs["seed"]))
    checks("generated draws depend on --seed only", [
        None if outs[0][0] == 0 and outs[1][0] == 0 else "non-zero exit",
        None if np.array_equal(outs[0][1], outs[1][1]) else "two runs with --seed 7 differ",
        None if outs[0][2] == 7 else f"seed attribute {outs[0][2]}"])

    # --precision bf16: bf16 GEMM operands, FP32 everything else: within the bounds of
    # tests/reference/test_bf16_fixtures.cpp for st-moe (u = 2^-8): output max-norm 4 u, gradients 2-norm 4 u.
    rc1, _, err1 = run(moegrad, files(d) + ["--backward"])
    os.replace(f"{d}/O.h5", f"{d}/O_fp32.h5")
    rc2, _, err2 = run(moegrad, files(d) + ["--backward", "--precision", "bf16"])
    with h5py.File(f"{d}/O.h5", "r") as bf, h5py.File(f"{d}/O_fp32.h5", "r") as fp:
        def within(key):
            got, want = bf[key][()].astype(np.float64), fp[key][()].astype(np.float64)
            if key.startswith("grad/"):
                err = float(np.linalg.norm(got - want)) / max(float(np.linalg.norm(want)), 1e-300)
            else:
                err = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-30)
            return None if err <= 4 / 256 else f"{key}: bf16 vs fp32 relative error {err:.4g} > 4 2^-8"
        checks("--precision bf16 stays within its bound of FP32", [
            None if rc1 == 0 and rc2 == 0 else f"exit {rc1}/{rc2}: {err1.strip()} {err2.strip()}",
            None if bf.attrs.get("precision") == "bf16" and fp.attrs.get("precision") == "fp32" else "precision attributes",
            None if bf["output"].dtype == np.float32 else f"output dtype {bf['output'].dtype}",
            None if not np.array_equal(bf["output"][()], fp["output"][()]) else "bf16 output equals FP32's",
            within("output")] + [within(k) for k in grad_keys(bf)] + [
            None if len(grad_keys(bf)) > 1 else "no gradients written"])
    rc, _, err = run(moegrad, files(d) + ["--precision", "fp16"])
    checks("--precision fp16 is one usage error", [
        None if rc == 2 else f"exit {rc}",
        None if len(err.strip().splitlines()) == 1 and "--precision must be fp32 or bf16, got 'fp16'" in err
        else f"stderr {err!r}"])

    # float64 weights: the module computes in float64 and the inputs are converted.
    with h5py.File(f"{d}/W.h5", "a") as w:
        for k in list(w["model"].keys()):
            t = w["model/" + k][()]
            del w["model/" + k]
            w["model/" + k] = t.astype(np.float64)
    with h5py.File(os.path.join(fixture_dir, "st_moe_train.h5"), "r") as fx, h5py.File(f"{d}/I.h5", "a") as i:
        i["noise_uniform"], i["route_uniform"] = fx["noise_uniform"][()], fx["route_uniform"][()]
        want = fx["output"][()]
    rc, _, err = run(moegrad, files(d))
    with h5py.File(f"{d}/O.h5", "r") as o:
        checks("float64 weights give a float64 module", [
            None if rc == 0 else f"exit {rc}: {err.strip()}",
            None if o["output"].dtype == np.float64 else f"output dtype {o['output'].dtype}",
            close("output", o["output"][()], want, 1e-5, 1e-6)])
    rc, _, err = run(moegrad, files(d) + ["--precision", "bf16"])
    checks("--precision bf16 with float64 weights is one error", [
        None if rc == 1 else f"exit {rc}",
        None if len(err.strip().splitlines()) == 1 and "--precision bf16 needs float32 weights, got f64" in err
        else f"stderr {err!r}"])


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    moegrad, fixture_dir, work = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.makedirs(work, exist_ok=True)
    checks = Checks()
    fixtures = sorted(glob.glob(os.path.join(fixture_dir, "*.h5")))
    if not fixtures:
        sys.exit(f"no fixtures in {fixture_dir}")
    gpus = cuda_devices(moegrad)
    for path in fixtures:
        name, problems = check_fixture(moegrad, path, work)
        checks(f"fixture {name}", problems)
        if gpus > 0:  # the same fixture on the GPU, at the same tolerances
            name, problems = check_fixture(moegrad, path, work, "cuda")
            checks(f"fixture {name} on cuda", problems)
    check_errors(moegrad, fixture_dir, work, checks)
    check_behaviours(moegrad, fixture_dir, work, checks)
    print(f"{len(checks.failed)} failed" if checks.failed else "all passed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
