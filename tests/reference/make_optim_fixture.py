#!/usr/bin/env python3
"""Write tests/reference/fixtures_optim/optim_steps.h5: PyTorch optimizer steps, gradient
clipping and learning-rate schedules, replayed by tests/optim/test_optim_parity.cpp.

Run with the reference venv (Debian's torch 1.13.1):
    build/reference-venv/bin/python tests/reference/make_optim_fixture.py
The layout is described in tests/reference/fixtures_optim/README.md. The output is
deterministic (fixed seeds, one thread, no HDF5 timestamps).
"""

import json
import math
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures_optim", "optim_steps.h5")
STEPS = 5
# name -> shape; dotted names like a module's named_parameters()
PARAMS = [("experts.w1", (3, 4)), ("gate.weight", (2, 4)), ("bias", (5,))]

# Every case: the optimizer, its constructor arguments (torch's names), the learning rate used
# at each step (set on the param group before the step), the parameter dtype, and the steps
# at which a parameter has no gradient (p.grad = None: the optimizer skips it).
CASES = [
    ("sgd_plain", "SGD", dict(lr=0.1), [0.1, 0.1, 0.05, 0.05, 0.02], "float32", {}),
    ("sgd_momentum_dampening_wd", "SGD",
     dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01), [0.05] * STEPS, "float32",
     {"gate.weight": [0]}),  # its momentum buffer starts at step 1
    ("sgd_nesterov", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
     [0.05] * STEPS, "float32", {}),
    ("sgd_momentum_maximize", "SGD", dict(lr=0.02, momentum=0.5, maximize=True),
     [0.02] * STEPS, "float32", {}),
    ("adam_default", "Adam", dict(), [1e-3] * STEPS, "float32", {}),
    ("adam_wd_amsgrad", "Adam", dict(lr=0.01, weight_decay=0.05, amsgrad=True), [0.01] * STEPS,
     "float32", {}),
    ("adam_f64_maximize", "Adam", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01,
                                       maximize=True), [0.02] * STEPS, "float64", {}),
    ("adamw_default", "AdamW", dict(), [1e-3, 2e-3, 3e-3, 2e-3, 1e-3], "float32",
     {"bias": [2]}),  # bias's step count falls one behind
    ("adamw_amsgrad", "AdamW", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1,
                                    amsgrad=True), [0.01] * STEPS, "float32", {}),
]

SLOTS = {"SGD": ["momentum_buffer"], "Adam": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
         "AdamW": ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]}
# the group entries a moegrad optimizer has (torch's names; foreach, capturable, ... left out)
HYPER = {"SGD": ["lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"],
         "Adam": ["lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"],
         "AdamW": ["lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"]}


def arr(t, dtype):
    return np.array(t.detach().cpu().numpy(), dtype=dtype, order="C")


def group(parent, name):
    """create_group without modification times, so regenerated files are byte-identical"""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def dataset(parent, name, data):
    return parent.create_dataset(name, data=data, track_times=False)


def create_file(path):
    """h5py.File(path, "w") in the HDF5 1.8 format (compact groups: about half the size of the
    default), with no modification time on the root group either"""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V18, h5py.h5f.LIBVER_V18)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    return h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def run_case(f, index, name, opt_name, kwargs, lrs, dtype, no_grad):
    tdtype = getattr(torch, dtype)
    gen = torch.Generator().manual_seed(1000 + index)
    params = [torch.randn(shape, generator=gen, dtype=torch.float64).to(tdtype).requires_grad_()
              for _, shape in PARAMS]
    grads = [torch.randn((STEPS,) + shape, generator=gen, dtype=torch.float64).to(tdtype)
             for _, shape in PARAMS]
    init = [p.detach().clone() for p in params]
    kwargs = dict(kwargs, foreach=False)  # the single-tensor update rules
    opt = getattr(torch.optim, opt_name)(params, **kwargs)
    group_dict = opt.param_groups[0]
    hyper = {k: (list(group_dict[k]) if isinstance(group_dict[k], tuple) else group_dict[k])
             for k in HYPER[opt_name]}

    slots = [s for s in SLOTS[opt_name]
             if not (s == "momentum_buffer" and hyper["momentum"] == 0)
             and not (s == "max_exp_avg_sq" and not hyper["amsgrad"])]
    after = [[] for _ in PARAMS]  # per param, per step: the parameter
    state = [{s: [] for s in slots + ["step"]} for _ in PARAMS]
    for t in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lrs[t]
        for i, (pname, _) in enumerate(PARAMS):
            params[i].grad = None if t in no_grad.get(pname, []) else grads[i][t].clone()
        opt.step()
        for i, p in enumerate(params):
            after[i].append(p.detach().clone())
            st = opt.state[p]
            for s in slots:
                v = st.get(s)
                state[i][s].append(torch.zeros_like(p) if v is None else v.detach().clone())
            # torch's SGD keeps no step count: count the updates as moegrad does
            if opt_name == "SGD":
                prev = state[i]["step"][-1] if state[i]["step"] else 0
                state[i]["step"].append(prev + (0 if t in no_grad.get(PARAMS[i][0], []) else 1))
            else:
                state[i]["step"].append(int(st["step"].item()) if "step" in st else 0)

    desc = {"name": name, "optimizer": opt_name, "hyperparameters": hyper, "dtype": dtype,
            "steps": STEPS, "params": [n for n, _ in PARAMS], "slots": slots,
            "no_grad": no_grad}
    g = group(f, name)
    g.attrs["optimizer"] = opt_name
    g.attrs["hyperparameters_json"] = json.dumps(hyper, sort_keys=True)
    g.attrs["description_json"] = json.dumps(desc, sort_keys=True)
    dataset(g, "lr", np.array(lrs, dtype=np.float64))
    for sub in ("init", "grads", "params", "state"):
        group(g, sub)
    for i, (pname, _) in enumerate(PARAMS):
        dataset(g["init"], pname, arr(init[i], dtype))
        grad_i = grads[i].clone()
        for t in no_grad.get(pname, []):
            grad_i[t].zero_()  # not used: the parameter had no gradient at this step
        dataset(g["grads"], pname, arr(grad_i, dtype))
        dataset(g["params"], pname, arr(torch.stack(after[i]), dtype))
        sg = group(g["state"], pname)
        for s in slots:
            dataset(sg, s, arr(torch.stack(state[i][s]), dtype))
        dataset(sg, "step", np.array(state[i]["step"], dtype=np.int64))
    return desc


def clipping(f):
    gen = torch.Generator().manual_seed(77)
    grads = [torch.randn(shape, generator=gen) * 2.0 for _, shape in PARAMS]
    g = group(f, "clip")
    group(g, "grads")
    for (pname, _), gr in zip(PARAMS, grads):
        dataset(g["grads"], pname, arr(gr, "float32"))
    cases = []
    for cname, max_norm, norm_type in [("norm2_clips", 1.0, 2.0), ("norm2_no_clip", 1000.0, 2.0),
                                       ("norm_inf_clips", 0.5, math.inf), ("norm1_clips", 3.0, 1.0)]:
        ps = [gr.clone().requires_grad_() for gr in grads]
        for p, gr in zip(ps, grads):
            p.grad = gr.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm, norm_type)
        c = group(g, cname)
        c.attrs["max_norm"] = max_norm
        c.attrs["norm_type"] = norm_type
        dataset(c, "total_norm", arr(total, "float32"))
        for (pname, _), p in zip(PARAMS, ps):
            dataset(c, pname, arr(p.grad, "float32"))
        cases.append({"name": cname, "max_norm": max_norm,
                      "norm_type": "inf" if math.isinf(norm_type) else norm_type})
    ps = [gr.clone().requires_grad_() for gr in grads]
    for p, gr in zip(ps, grads):
        p.grad = gr.clone()
    torch.nn.utils.clip_grad_value_(ps, 0.5)
    c = group(g, "value")
    c.attrs["clip_value"] = 0.5
    for (pname, _), p in zip(PARAMS, ps):
        dataset(c, pname, arr(p.grad, "float32"))
    return {"norm": cases, "value": {"name": "value", "clip_value": 0.5}}


def warmup_cosine(step, base_lr, warmup, total, min_lr):
    """the formula documented in optim/schedule.h"""
    if step < warmup:
        return base_lr * step / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / (total - warmup)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def schedules(f):
    n = 40
    g = group(f, "schedules")
    out = {}
    # StepLR: the lr the optimizer holds before the update with index s (s = 0 .. n-1)
    base, step_size, gamma = 0.5, 7, 0.3
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    s = group(g, "step_lr")
    s.attrs["base_lr"], s.attrs["step_size"], s.attrs["gamma"] = base, step_size, gamma
    dataset(s, "lr", np.array(lrs, dtype=np.float64))
    out["step_lr"] = {"base_lr": base, "step_size": step_size, "gamma": gamma}
    # warmup + cosine through torch's LambdaLR
    for name, base, warmup, total, min_lr in [("warmup_cosine", 0.1, 5, 30, 0.0),
                                              ("warmup_cosine_min", 0.1, 5, 30, 0.01)]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=base)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: warmup_cosine(t, base, warmup, total, min_lr) / base)
        lrs = []
        for _ in range(n):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        s = group(g, name)
        for k, v in dict(base_lr=base, warmup_steps=warmup, total_steps=total,
                         min_lr=min_lr).items():
            s.attrs[k] = v
        dataset(s, "lr", np.array(lrs, dtype=np.float64))
        out[name] = {"base_lr": base, "warmup_steps": warmup, "total_steps": total,
                     "min_lr": min_lr}
    return out


def main():
    torch.set_num_threads(1)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "numpy": np.__version__, "h5py": h5py.__version__}
    with create_file(OUT) as f:
        cases = [run_case(f, i, *c) for i, c in enumerate(CASES)]
        clip = clipping(f)
        sched = schedules(f)
        a = f.attrs
        a["format"] = "moegrad-optim-fixture"
        a["format_version"] = 1
        a["cases_json"] = json.dumps(cases, sort_keys=True)
        a["clip_json"] = json.dumps(clip, sort_keys=True)
        a["schedules_json"] = json.dumps(sched, sort_keys=True)
        a["versions_json"] = json.dumps(versions, sort_keys=True)
        a["generator"] = "tests/reference/make_optim_fixture.py"
    print(f"wrote {OUT} ({os.path.getsize(OUT)} B)")


if __name__ == "__main__":
    main()
