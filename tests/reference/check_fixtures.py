#!/usr/bin/env python3
"""Validate the layout of moegrad's reference fixtures (tests/reference/fixtures/*.h5).

Needs only h5py and numpy (Debian python3-h5py, python3-numpy), not torch or the reference
packages.  Usage:  python3 tests/reference/check_fixtures.py [DIR]
Prints one line per fixture and exits non-zero if any check fails.
"""

import glob
import json
import os
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_TOTAL_BYTES = 5 * 1024 * 1024

ROOT_ATTRS = ["format", "format_version", "module", "args_json", "forward_json", "mode", "seed",
              "inputs_json", "draws_json", "outputs_json", "loss_json", "loss_definition",
              "loss_value", "deviations_json", "versions_json", "version_torch"]

# module -> outputs it must have
MODULE_OUTPUTS = {
    "lmoe.Experts": ["output"],
    "lmoe.Top2Gating": ["dispatch", "combine", "aux_loss"],
    "lmoe.MoE": ["output", "aux_loss"],
    "lmoe.HeirarchicalMoE": ["output", "aux_loss"],
    "st_moe.TopNGating": ["dispatch", "combine", "balance_loss", "router_z_loss"],
    "st_moe.MoE": ["output", "aux_loss", "balance_loss", "router_z_loss"],
    "st_moe.SparseMoEBlock": ["output", "aux_loss", "balance_loss", "router_z_loss"],
    "st_moe.Expert": ["output"],
    "zeta.Experts": ["output"],
    "zeta.MoERouter": ["output"],
    "zeta.TopNGating": ["dispatch", "combine", "balance_loss", "router_z_loss"],
}
GATING = {"lmoe.Top2Gating", "st_moe.TopNGating", "zeta.TopNGating"}
BUFFER_SUFFIXES = ("threshold_train", "threshold_eval")   # state_dict entries without gradient


class Problems:
    def __init__(self):
        self.items = []

    def check(self, cond, msg):
        if not cond:
            self.items.append(msg)
        return cond


def shape(f, key):
    return tuple(f[key].shape)


def expected_draw_shapes(module, args, fw, mode, x_shape):
    """Shapes of the random draws the forward must have consumed, derived from x and args."""
    if module in ("st_moe.TopNGating", "zeta.TopNGating", "st_moe.MoE", "st_moe.SparseMoEBlock"):
        b, n = x_shape[-3], x_shape[-2]
        if module == "st_moe.SparseMoEBlock":
            e, k = args["moe"]["args"]["num_experts"], args["moe"]["args"]["gating_top_n"]
        elif module == "st_moe.MoE":
            e, k = args["num_experts"], args["gating_top_n"]
        else:
            e, k = args["num_gates"], args["top_n"]
        out = {}
        if fw.get("noise_gates"):
            out["noise_uniform"] = (b, n, e)
        out["route_uniform"] = (k, b, n)
        return out
    if module in ("lmoe.Top2Gating", "lmoe.MoE", "lmoe.HeirarchicalMoE"):
        out = {}
        if args["second_policy_" + mode] == "random":
            out["policy_uniform"] = tuple(x_shape[:-1])
        return out
    if module == "zeta.MoERouter" and args.get("mechanism") == "gumbel":
        return {"gumbel_exponential": tuple(x_shape[:-1]) + (args["num_experts"],)}
    return {}


def check_file(path, P):
    with h5py.File(path, "r") as f:
        a = f.attrs
        for k in ROOT_ATTRS:
            P.check(k in a, f"missing root attribute {k}")
        if P.items:
            return
        module = str(a["module"])
        mode = str(a["mode"])
        P.check(a["format"] == "moegrad-reference-fixture", "bad format attribute")
        P.check(module in MODULE_OUTPUTS, f"unknown module {module}")
        P.check(mode in ("train", "eval"), f"bad mode {mode}")
        args = json.loads(a["args_json"])
        fw = json.loads(a["forward_json"])
        inputs = json.loads(a["inputs_json"])
        draws = json.loads(a["draws_json"])
        outputs = json.loads(a["outputs_json"])
        loss = json.loads(a["loss_json"])
        json.loads(a["deviations_json"])
        json.loads(a["versions_json"])

        # every dataset: float32, finite
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                P.check(obj.dtype == np.float32, f"{name}: dtype {obj.dtype}, expected float32")
                P.check(np.all(np.isfinite(obj[()])), f"{name}: non-finite values")
        f.visititems(visit)

        P.check("model" in f and len(f["model"]) > 0, "missing or empty /model")
        P.check(inputs and inputs[0] == "x", "inputs_json must start with x")
        for name in inputs + ["grad_output"]:
            P.check(name in f, f"missing input dataset {name}")
        for name in MODULE_OUTPUTS.get(module, []):
            P.check(name in outputs, f"outputs_json lacks {name}")
        for name in outputs:
            P.check(name in f, f"missing output dataset {name}")
        if P.items:
            return
        x_shape = shape(f, "x")

        # draws: listed == present == derived from module/args/x
        for name, sampler, shp in draws:
            if P.check(name in f, f"missing draw {name}"):
                P.check(shape(f, name) == tuple(shp), f"draw {name}: shape {shape(f, name)} "
                        f"!= declared {tuple(shp)}")
                v = f[name][()]
                if sampler == "uniform_":
                    P.check(np.all((v >= 0) & (v < 1)), f"draw {name}: outside [0,1)")
                else:
                    P.check(np.all(v >= 0), f"draw {name}: negative exponential draw")
        want = expected_draw_shapes(module, args, fw, mode, x_shape)
        if module == "lmoe.HeirarchicalMoE" and "policy_uniform" in want:
            eo = args["num_experts"][0]
            b, n = x_shape[0], x_shape[1]
            cf = args["capacity_factor_" + mode]
            co = max(min(n, int((n * cf) / eo)), 4)
            want["policy_uniform_inner"] = (eo, b, co)
        got = {d[0]: tuple(d[2]) for d in draws}
        P.check(got == want, f"draws {got} != expected {want}")
        if "gumbel_exponential" in got:
            P.check("gumbel_noise" in f and shape(f, "gumbel_noise") == got["gumbel_exponential"],
                    "gumbel_noise missing or mis-shaped")

        # loss and gradients
        prim = loss.get("primary")
        P.check(prim in outputs, f"loss primary {prim} not an output")
        P.check(shape(f, "grad_output") == shape(f, prim), "grad_output shape != primary shape")
        L = float(np.sum(f[prim][()].astype(np.float64) * f["grad_output"][()]))
        for name in loss.get("plus", []):
            P.check(name in outputs, f"loss term {name} not an output")
            L += float(np.sum(f[name][()].astype(np.float64)))
        lv = float(a["loss_value"])
        P.check(abs(L - lv) <= 1e-4 * max(1.0, abs(lv)), f"loss_value {lv} != recomputed {L}")
        P.check("grad" in f and "x" in f["grad"], "missing grad/x")
        if "grad/x" in f:
            P.check(shape(f, "grad/x") == x_shape, "grad/x shape != x shape")
        for k in f["grad"]:
            if k == "x":
                continue
            if P.check(k in f["model"], f"grad/{k} has no /model/{k}"):
                P.check(shape(f, "grad/" + k) == shape(f, "model/" + k), f"grad/{k} shape")
        for k in f["model"]:
            P.check(k in f["grad"] or k.endswith(BUFFER_SUFFIXES),
                    f"/model/{k} has no gradient and is not a known buffer")

        # per-module shape rules
        if module in GATING:
            c = f["combine"][()]
            P.check(shape(f, "dispatch") == c.shape, "dispatch shape != combine shape")
            P.check(c.shape[:-2] == x_shape[:-1], f"combine {c.shape} vs x {x_shape}")
            e = args["num_gates"]
            P.check(c.shape[-2] == e, "combine expert axis != num_gates")
            P.check(np.array_equal(f["dispatch"][()] != 0, c != 0), "dispatch/combine patterns")
            k = args.get("top_n", 2)
            P.check(np.all((c != 0).sum(axis=(-2, -1)) <= k), "a token uses more than top_n slots")
            P.check(np.all((c != 0).sum(axis=-3) <= 1), "an expert slot holds more than 1 token")
            if "importance" in inputs:
                P.check(shape(f, "importance") == x_shape[:-1], "importance shape")
        else:
            out_shape = shape(f, "output")
            if module == "zeta.MoERouter":
                P.check(out_shape == x_shape[:-1] + (args["num_experts"],), "router output shape")
            elif module == "zeta.Experts":
                P.check(out_shape == (args["experts"],) + x_shape[1:], "zeta experts output shape")
            else:
                P.check(out_shape == x_shape, f"output {out_shape} != x {x_shape}")
        for name in ("aux_loss", "balance_loss", "router_z_loss"):
            if name in outputs:
                s = shape(f, name)
                if module.startswith("lmoe."):
                    P.check(s == (), f"{name}: shape {s}, expected 0-d")
                elif mode == "train":
                    P.check(s == (), f"{name}: shape {s}, expected 0-d in train")
                else:
                    P.check(s == (1,), f"{name}: shape {s}, expected (1,) in eval")


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "fixtures")
    files = sorted(glob.glob(os.path.join(d, "*.h5")))
    bad = 0
    total = 0
    seen = set()
    if not files:
        print(f"no fixtures in {d}")
        return 1
    for path in files:
        P = Problems()
        try:
            check_file(path, P)
            with h5py.File(path, "r") as f:
                seen.add(str(f.attrs.get("module", "")))
        except Exception as ex:  # a broken file is a problem, not a crash
            P.items.append(f"exception: {type(ex).__name__}: {ex}")
        size = os.path.getsize(path)
        total += size
        name = os.path.basename(path)
        if P.items:
            bad += 1
            print(f"FAIL {name}")
            for msg in P.items:
                print(f"     - {msg}")
        else:
            print(f"ok   {name} ({size} B)")
    missing = sorted(set(MODULE_OUTPUTS) - seen)
    if missing:
        bad += 1
        print(f"FAIL no fixture for module(s): {', '.join(missing)}")
    if total >= MAX_TOTAL_BYTES:
        bad += 1
        print(f"FAIL total size {total} B >= {MAX_TOTAL_BYTES} B")
    print(f"{len(files)} fixtures, {total} B total (limit {MAX_TOTAL_BYTES} B)")
    print(f"check_fixtures: {len(files) + 2 - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
