#!/usr/bin/env python3
"""Generate moegrad's reference-parity fixtures from the published PyTorch MoE modules.

Run (after scripts/reference-env):
    build/reference-venv/bin/python tests/reference/make_fixtures.py [--only NAME ...]

Every fixture is one small HDF5 file tests/reference/fixtures/<name>.h5; the layout, the scalar
loss whose gradients are stored, and the deviations from the originals are documented in
tests/reference/README.md.  The modules are the unmodified package sources
(mixture-of-experts 0.2.3, st-moe-pytorch 0.1.8, CoLT5-attention) except:
  * LMoE Top2Gating 'threshold' policy: bug C2 fixed (spec §7), see apply_c2_fix();
  * zeta modules: ported in zeta_modules.py (MoERouter follows moegrad's adopted S3).

Random draws made inside forward() are intercepted by patching torch.Tensor.uniform_ and
torch.Tensor.exponential_ (the only samplers the modules call in forward), recorded exactly
as drawn from the seeded CPU generator, and stored.  Each fixture is then re-run with the
recorded draws injected (and the global generator scrambled) and must reproduce its outputs
bitwise; that proves the stored draws are all the randomness the forward consumed.
"""

import argparse
import importlib.metadata as md
import inspect
import json
import os
import platform
import subprocess
import sys
import textwrap
import zlib

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_DIR = os.path.join(HERE, "fixtures")
sys.path.insert(0, HERE)

import mixture_of_experts.mixture_of_experts as lmoe_src  # noqa: E402
import st_moe_pytorch.st_moe_pytorch as st_src  # noqa: E402
import zeta_modules  # noqa: E402

FORMAT_VERSION = 1

# --------------------------------------------------------------------------------------------
# deviations from the originals
# --------------------------------------------------------------------------------------------

C2_OLD = "mask_2 *= (gate_2 > threshold).float()\n"
C2_NEW = "mask_2 *= (gate_2 > threshold).float()[..., None]  # C2 fix, moegrad spec §7\n"


def apply_c2_fix():
    """Re-compile LMoE Top2Gating.forward from the package source with the one-line C2 fix.

    The original multiplies mask_2 [..,b,n,e] by (gate_2 > thr) [..,b,n] without [..., None]
    (line 175): a RuntimeError unless the shapes happen to broadcast, silently wrong when they
    do.  moegrad adopts the per-token mask (as tensor2tensor).  Only the 'threshold' branch
    changes; every other policy runs the original lines.
    """
    src = textwrap.dedent(inspect.getsource(lmoe_src.Top2Gating.forward))
    assert src.count(C2_OLD) == 1, "LMoE source changed: C2 line not found exactly once"
    src = src.replace(C2_OLD, C2_NEW)
    ns = {}
    code = compile(src, lmoe_src.__file__ + " [Top2Gating.forward, C2 fix]", "exec")
    exec(code, lmoe_src.__dict__, ns)
    lmoe_src.Top2Gating.forward = ns["forward"]


apply_c2_fix()

GATING_TYPES = (lmoe_src.Top2Gating, st_src.TopNGating, zeta_modules.TopNGating)

# --------------------------------------------------------------------------------------------
# random-draw tape
# --------------------------------------------------------------------------------------------

_ORIG_UNIFORM = torch.Tensor.uniform_
_ORIG_EXPONENTIAL = torch.Tensor.exponential_


class DrawTape:
    """Intercept torch.Tensor.uniform_/exponential_ during a forward.

    `expected` is the list of (name, sampler, shape) the forward must consume, in order.
    Without `replay` the original sampler runs (seeded global CPU generator) and the values are
    recorded; with `replay` the given tensors are copied in instead.  Any unexpected call, a
    shape mismatch, a non-default range, or a missing call raises.
    """

    def __init__(self, expected, replay=None):
        self.expected = list(expected)
        self.replay = replay
        self.record = {}
        self.i = 0

    def _take(self, sampler, t, args, kwargs):
        if self.i >= len(self.expected):
            raise RuntimeError(f"unexpected extra {sampler} draw of shape {tuple(t.shape)}")
        name, want_sampler, shape = self.expected[self.i]
        self.i += 1
        if sampler != want_sampler or tuple(t.shape) != tuple(shape):
            raise RuntimeError(
                f"draw {name}: expected {want_sampler}{tuple(shape)}, got {sampler}{tuple(t.shape)}")
        if kwargs.get("generator") is not None:
            raise RuntimeError(f"draw {name}: explicit generator")
        if sampler == "uniform_":
            lo, hi = (list(args) + [0.0, 1.0][len(args):])[:2]
            if float(lo) != 0.0 or float(hi) != 1.0:
                raise RuntimeError(f"draw {name}: uniform_({lo}, {hi}), expected [0, 1)")
        else:
            lam = args[0] if args else kwargs.get("lambd", 1.0)
            if float(lam) != 1.0:
                raise RuntimeError(f"draw {name}: exponential_({lam}), expected rate 1")
        if t.dtype != torch.float32:
            raise RuntimeError(f"draw {name}: dtype {t.dtype}")
        with torch.no_grad():
            if self.replay is not None:
                t.copy_(self.replay[name])
            elif sampler == "uniform_":
                _ORIG_UNIFORM(t, *args, **kwargs)
            else:
                _ORIG_EXPONENTIAL(t, *args, **kwargs)
        self.record[name] = t.detach().clone()
        return t

    def __enter__(self):
        tape = self

        def uniform_(t, *args, **kwargs):
            return tape._take("uniform_", t, args, kwargs)

        def exponential_(t, *args, **kwargs):
            return tape._take("exponential_", t, args, kwargs)

        torch.Tensor.uniform_ = uniform_
        torch.Tensor.exponential_ = exponential_
        return self

    def __exit__(self, exc_type, exc, tb):
        torch.Tensor.uniform_ = _ORIG_UNIFORM
        torch.Tensor.exponential_ = _ORIG_EXPONENTIAL
        if exc_type is None and self.i != len(self.expected):
            missing = [e[0] for e in self.expected[self.i:]]
            raise RuntimeError(f"draws not consumed: {missing}")
        return False


# --------------------------------------------------------------------------------------------
# fixture specifications
# --------------------------------------------------------------------------------------------


def jsonable(v):
    if isinstance(v, type):
        return v.__name__
    if isinstance(v, tuple):
        return [jsonable(a) for a in v]
    if isinstance(v, list):
        return [jsonable(a) for a in v]
    if isinstance(v, dict):
        return {k: jsonable(a) for k, a in v.items()}
    return v


def full_args(cls, given):
    """Constructor arguments as the original binds them: given ones plus defaults."""
    sig = inspect.signature(cls.__init__)
    bound = sig.bind_partial(None, **given)
    bound.apply_defaults()
    out = {}
    for k, v in bound.arguments.items():
        if k in ("self", "args", "kwargs"):
            continue
        p = sig.parameters[k]
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[k] = jsonable(v)
    return out


class Fixture:
    def __init__(self, name, module, cls, args, mode, inputs, draws, call, primary, losses,
                 forward=None, build=None, notes="", deviations=(), args_json=None, check=None):
        self.name = name
        self.module = module          # e.g. "st_moe.MoE"
        self.cls = cls
        self.args = args              # given constructor kwargs
        self.mode = mode              # "train" / "eval"
        self.inputs = inputs          # list of (name, fn(gen) -> tensor); the first is "x"
        self.draws = draws            # list of (name, sampler, shape)
        self.call = call              # fn(model, inputs, forward_kwargs) -> dict name->tensor
        self.primary = primary        # output multiplied by grad_output in L
        self.losses = losses          # outputs added (summed) to L
        self.forward = forward or {}
        self.build = build or (lambda: cls(**args))
        self.notes = notes
        self.deviations = list(deviations)
        self.args_json = args_json if args_json is not None else full_args(cls, args)
        self.check = check            # optional fn(outputs) -> None (asserts the case is exercised)


def randn(*shape, scale=1.0):
    return lambda g: torch.randn(*shape, generator=g) * scale


def importance_input(*shape):
    # values in {0, 0.5, 1}: 0 = empty slot, 0.5 = second choice, 1 = first choice (HMoE style)
    def f(g):
        r = torch.randint(0, 4, shape, generator=g)
        return torch.where(r == 0, 0.0, torch.where(r == 1, 0.5, 1.0)).float()
    return f


def call_lmoe_gate(model, inp, fw):
    kw = {"importance": inp["importance"]} if "importance" in inp else {}
    d, c, loss = model(inp["x"], **kw)
    return {"dispatch": d, "combine": c, "aux_loss": loss}


def call_lmoe_moe(model, inp, fw):
    out, loss = model(inp["x"], **fw)
    return {"output": out, "aux_loss": loss}


def call_plain(model, inp, fw):
    return {"output": model(inp["x"], **fw)}


def call_topn(model, inp, fw):
    d, c, bl, zl = model(inp["x"], **fw)
    return {"dispatch": d, "combine": c, "balance_loss": bl, "router_z_loss": zl}


def call_st_moe(model, inp, fw):
    r = model(inp["x"], **fw)
    return {"output": r.outputs, "aux_loss": r.total_aux_loss,
            "balance_loss": r.balance_loss, "router_z_loss": r.router_z_loss}


def expect_drops(k, b, n):
    def chk(out):
        kept = int((out["combine"] != 0).sum())
        assert kept < k * b * n, f"no capacity drop ({kept} of {k * b * n} kept)"
    return chk


C2_NOTE = ("LMoE Top2Gating 'threshold' policy uses the C2 fix (spec §7): "
           "mask_2 *= (gate_2 > threshold)[..., None]; the original omits [..., None]")
S3_NOTE = ("zeta MoERouter follows moegrad's adopted S3 (spec §7): Linear(dim, num_experts) "
           "without hidden layers and softmax over the last (expert) dim; the original has "
           "Linear(dim, dim) and softmax(dim=1)")
ZETA_PORT = "zeta module ported in tests/reference/zeta_modules.py (zeta is not installed)"

D, B = 16, 2


def fixtures():
    L = []
    Le, Top2, LMoE, HMoE = (lmoe_src.Experts, lmoe_src.Top2Gating, lmoe_src.MoE,
                            lmoe_src.HeirarchicalMoE)
    STTop, STMoE, STBlock, STExpert = (st_src.TopNGating, st_src.MoE, st_src.SparseMoEBlock,
                                       st_src.Expert)
    ZE, ZR, ZTop = zeta_modules.Experts, zeta_modules.MoERouter, zeta_modules.TopNGating

    # ---- lucidrains/mixture-of-experts ------------------------------------------------------
    L.append(Fixture("lmoe_experts", "lmoe.Experts", Le,
                     dict(dim=D, num_experts=4), "train",
                     [("x", randn(4, 10, D))], [], call_plain, "output", [],
                     notes="GELU (exact erf) default, hidden_dim = 4*dim"))
    L.append(Fixture("lmoe_experts_tuple", "lmoe.Experts", Le,
                     dict(dim=D, num_experts=(2, 3), hidden_dim=24), "train",
                     [("x", randn(2, 3, 6, D))], [], call_plain, "output", [],
                     notes="tuple num_experts (eo, ei); weights [2,3,d,h]"))
    n, e = 10, 4
    for policy, mode, extra, note in [
        ("all", "train", {}, "policy all"),
        ("none", "eval", {}, "policy none, eval (cap from capacity_factor_eval=2)"),
        ("threshold", "train", dict(second_threshold_train=0.3), "policy threshold (C2 fix)"),
        ("random", "train", {}, "policy random"),
        ("random", "eval", {}, "policy random in eval (still draws)"),
    ]:
        args = dict(dim=D, num_gates=e, **extra)
        args["second_policy_" + mode] = policy
        L.append(Fixture(f"lmoe_top2gating_{policy}_{mode}", "lmoe.Top2Gating", Top2, args, mode,
                         [("x", randn(B, n, D))],
                         [("policy_uniform", "uniform_", (B, n))] if policy == "random" else [],
                         call_lmoe_gate, "combine", ["aux_loss"], notes=note,
                         deviations=[C2_NOTE] if policy == "threshold" else []))
    L.append(Fixture("lmoe_top2gating_importance", "lmoe.Top2Gating", Top2,
                     dict(dim=D, num_gates=e), "train",
                     [("x", randn(B, n, D)), ("importance", importance_input(B, n))],
                     [("policy_uniform", "uniform_", (B, n))],
                     call_lmoe_gate, "combine", ["aux_loss"],
                     notes="importance input in {0, 0.5, 1}, policy random"))
    eo, co = 3, 6
    L.append(Fixture("lmoe_top2gating_outer", "lmoe.Top2Gating", Top2,
                     dict(dim=D, num_gates=e, outer_expert_dims=(eo,)), "train",
                     [("x", randn(eo, B, co, D)), ("importance", importance_input(eo, B, co))],
                     [("policy_uniform", "uniform_", (eo, B, co))],
                     call_lmoe_gate, "combine", ["aux_loss"],
                     notes="outer_expert_dims=(3,) (w_gating [3,d,e]), importance, policy random; "
                           "the random draw is [eo,b,n]"))
    for mode in ("train", "eval"):
        L.append(Fixture(f"lmoe_moe_{mode}", "lmoe.MoE", LMoE,
                         dict(dim=D, num_experts=e, hidden_dim=32), mode,
                         [("x", randn(B, n, D))], [("policy_uniform", "uniform_", (B, n))],
                         call_lmoe_moe, "output", ["aux_loss"],
                         notes="default policy random, ReLU experts"))
    eo, ei = 2, 3
    co = max(min(n, int(n * 1.25 / eo)), 4)
    L.append(Fixture("lmoe_hmoe_train", "lmoe.HeirarchicalMoE", HMoE,
                     dict(dim=D, num_experts=(eo, ei), hidden_dim=32), "train",
                     [("x", randn(B, n, D))],
                     [("policy_uniform", "uniform_", (B, n)),
                      ("policy_uniform_inner", "uniform_", (eo, B, co))],
                     call_lmoe_moe, "output", ["aux_loss"],
                     notes=f"(eo,ei)=({eo},{ei}); outer capacity co={co} is the inner group"))

    # ---- lucidrains/st-moe-pytorch ------------------------------------------------------------
    n, e = 12, 4
    topn_cases = [
        # name, given args, forward kwargs, mode, check
        ("st_topn_top2_train", dict(top_n=2, capacity_factor_train=2.0), {}, "train", None),
        ("st_topn_top2_noise_train", dict(top_n=2), dict(noise_gates=True, noise_mult=1.0),
         "train", None),
        ("st_topn_top3_noise_train",
         dict(top_n=3, threshold_train=(0.2, 0.1), capacity_factor_train=3.0),
         dict(noise_gates=True, noise_mult=0.5), "train", None),
        ("st_topn_top2_difftopk_train", dict(top_n=2, differentiable_topk=True), {}, "train",
         None),
        ("st_topn_top3_difftopk_noise_train", dict(top_n=3, differentiable_topk=True),
         dict(noise_gates=True, noise_mult=1.0), "train", None),
        ("st_topn_top3_capdrop_train",
         dict(top_n=3, threshold_train=0.01, capacity_factor_train=0.5), {}, "train",
         expect_drops(3, B, n)),
        ("st_topn_top2_nost_train", dict(top_n=2, straight_through_dispatch_tensor=False), {},
         "train", None),
        ("st_topn_top2_eval", dict(top_n=2), {}, "eval", None),
        ("st_topn_top3_noise_eval", dict(top_n=3, threshold_eval=0.1),
         dict(noise_gates=True, noise_mult=1.0), "eval", None),
    ]
    for name, given, fw, mode, chk in topn_cases:
        k = given["top_n"]
        draws = ([("noise_uniform", "uniform_", (B, n, e))] if fw.get("noise_gates") else []) + \
            [("route_uniform", "uniform_", (k, B, n))]
        L.append(Fixture(name, "st_moe.TopNGating", STTop, dict(dim=D, num_gates=e, **given),
                         mode, [("x", randn(B, n, D))], draws, call_topn, "combine",
                         ["balance_loss", "router_z_loss"], forward=fw, check=chk))
    n = 10
    moe_cases = [
        ("st_moe_train", dict(), dict(noise_gates=True, noise_mult=1.0), "train"),
        ("st_moe_top3_difftopk_train",
         dict(gating_top_n=3, differentiable_topk=True, capacity_factor_train=2.0), {},
         "train"),
        ("st_moe_eval", dict(), {}, "eval"),
    ]
    for name, given, fw, mode in moe_cases:
        k = given.get("gating_top_n", 2)
        draws = ([("noise_uniform", "uniform_", (B, n, e))] if fw.get("noise_gates") else []) + \
            [("route_uniform", "uniform_", (k, B, n))]
        L.append(Fixture(name, "st_moe.MoE", STMoE, dict(dim=D, num_experts=e, **given), mode,
                         [("x", randn(B, n, D))], draws, call_st_moe, "output", ["aux_loss"],
                         forward=fw))
    moe_args = dict(dim=D, num_experts=e)
    blk_args = dict(add_ff_before=True, add_ff_after=True)
    L.append(Fixture("st_block_train", "st_moe.SparseMoEBlock", STBlock, blk_args, "train",
                     [("x", randn(B, n, D))],
                     [("noise_uniform", "uniform_", (B, n, e)),
                      ("route_uniform", "uniform_", (2, B, n))],
                     call_st_moe, "output", ["aux_loss"],
                     forward=dict(noise_gates=True, noise_mult=1.0),
                     build=lambda: STBlock(STMoE(**moe_args), **blk_args),
                     args_json=dict(full_args(STBlock, dict(moe=None, **blk_args)),
                                    moe={"module": "st_moe.MoE",
                                         "args": full_args(STMoE, moe_args)}),
                     notes="MoE built first (its RNG draws), then the block's ff_before, "
                           "ff_after"))
    for name, given in [("st_expert", dict(dim=D)),
                        ("st_expert_prenorm", dict(dim=D, prenorm=True)),
                        ("st_expert_prenorm_nomultbias",
                         dict(dim=D, hidden_mult=2, prenorm=True, mult_bias=False))]:
        L.append(Fixture(name, "st_moe.Expert", STExpert, given, "train",
                         [("x", randn(B, n, D))], [], call_plain, "output", []))

    # ---- zeta (ported) ------------------------------------------------------------------------
    L.append(Fixture("zeta_experts", "zeta.Experts", ZE, dict(dim=D, experts=4), "train",
                     [("x", randn(4, 8, D))], [], call_plain, "output", [],
                     deviations=[ZETA_PORT], notes="x [E,n,d]"))
    L.append(Fixture("zeta_experts_bcast", "zeta.Experts", ZE, dict(dim=D, experts=4), "train",
                     [("x", randn(1, 8, D))], [], call_plain, "output", [],
                     deviations=[ZETA_PORT], notes="x [1,n,d] broadcasts to [E,n,d]"))
    n, e = 10, 6
    for name, given, draws in [
        ("zeta_router_softmax", dict(dim=D, num_experts=e), []),
        ("zeta_router_softmax_hidden", dict(dim=D, num_experts=e, hidden_layers=[32, 24]), []),
        ("zeta_router_gumbel", dict(dim=D, num_experts=e, hidden_layers=[24], mechanism="gumbel"),
         [("gumbel_exponential", "exponential_", (B, n, e))]),
    ]:
        L.append(Fixture(name, "zeta.MoERouter", ZR, given, "train", [("x", randn(B, n, D))],
                         draws, call_plain, "output", [], deviations=[ZETA_PORT, S3_NOTE]))
    n, e = 12, 4
    for name, given, fw, mode, chk in [
        ("zeta_topn_min2_noise_train",
         dict(top_n=2, capacity_factor_train=0.5, min_expert_capacity=2),
         dict(noise_gates=True, noise_mult=1.0), "train", expect_drops(2, B, n)),
        ("zeta_topn_min8_eval", dict(top_n=2, min_expert_capacity=8), {}, "eval", None),
        ("zeta_topn_min5_difftopk_train",
         dict(top_n=2, differentiable_topk=True, min_expert_capacity=5, threshold_train=0.1),
         {}, "train", None),
    ]:
        draws = ([("noise_uniform", "uniform_", (B, n, e))] if fw.get("noise_gates") else []) + \
            [("route_uniform", "uniform_", (2, B, n))]
        L.append(Fixture(name, "zeta.TopNGating", ZTop, dict(dim=D, num_gates=e, **given), mode,
                         [("x", randn(B, n, D))], draws, call_topn, "combine",
                         ["balance_loss", "router_z_loss"], forward=fw, check=chk,
                         deviations=[ZETA_PORT],
                         notes="top_n=2 only: zeta's C1 (non-accumulated offset) does not "
                               "matter there"))
    return L


# --------------------------------------------------------------------------------------------
# running one fixture
# --------------------------------------------------------------------------------------------


def seed_of(name, attempt):
    return (zlib.crc32(name.encode()) + 7919 * attempt) % (2 ** 31)


def gate_patterns(model, fn):
    """Run fn() and return the discrete routing decisions of every gate inside `model`."""
    pats = []
    hooks = [m.register_forward_hook(lambda m, i, o: pats.append((o[1] != 0).clone()))
             for m in model.modules() if isinstance(m, GATING_TYPES)]
    try:
        out = fn()
    finally:
        for h in hooks:
            h.remove()
    return out, pats


def run(fx, model, inputs, replay=None):
    with DrawTape(fx.draws, replay) as tape:
        out, pats = gate_patterns(model, lambda: fx.call(model, inputs, fx.forward))
    if isinstance(model, zeta_modules.MoERouter) and model.mechanism == "gumbel":
        pats.append(out["output"].detach() > 0.5)   # the hard one-hot decision
    return out, tape.record, pats


def scalar_loss(fx, out, grad_output):
    loss = (out[fx.primary] * grad_output).sum()
    for name in fx.losses:
        loss = loss + out[name].sum()
    return loss


def build_case(fx, attempt):
    seed = seed_of(fx.name, attempt)
    torch.manual_seed(seed)
    model = fx.build()
    model.train(fx.mode == "train")
    g = torch.Generator().manual_seed(seed + 1)
    inputs = {name: f(g) for name, f in fx.inputs}
    inputs["x"].requires_grad_(True)

    out, draws, pats = run(fx, model, inputs)
    grad_output = torch.randn(out[fx.primary].shape, generator=g)
    if fx.check:
        fx.check(out)

    # the recorded draws are all the randomness: replay with a scrambled generator -> bitwise
    torch.manual_seed(12345)
    torch.rand(1000)
    out2, _, pats2 = run(fx, model, inputs, replay=draws)
    for k in out:
        assert torch.equal(out[k], out2[k]), f"{fx.name}: replay differs in {k}"

    # no near-ties: routing decisions must be stable under tiny input perturbations
    pg = torch.Generator().manual_seed(seed + 2)
    stable = True
    with torch.no_grad():
        for _ in range(6):
            xp = {k: v.detach().clone() for k, v in inputs.items()}
            xp["x"] = xp["x"] + 1e-4 * xp["x"].abs().mean() * torch.randn(xp["x"].shape,
                                                                            generator=pg)
            _, _, pp = run(fx, model, xp, replay=draws)
            stable &= all(torch.equal(a, b) for a, b in zip(pats, pp))
    if not stable:
        return None

    model.zero_grad(set_to_none=True)
    loss = scalar_loss(fx, out, grad_output)
    loss.backward()
    return dict(seed=seed, model=model, inputs=inputs, out=out, draws=draws,
                grad_output=grad_output, loss=loss)


def versions():
    v = {"python": platform.python_version(), "torch": str(torch.__version__),
         "numpy": np.__version__, "h5py": h5py.__version__}
    for dist in ("mixture-of-experts", "st-moe-pytorch", "CoLT5-attention", "local-attention",
                 "einops", "beartype"):
        try:
            v[dist] = md.version(dist)
        except md.PackageNotFoundError:
            v[dist] = "missing"
    try:
        v["debian:python3-torch"] = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "python3-torch"],
            capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return v


def f32(t):
    # np.array keeps 0-d tensors 0-d (np.ascontiguousarray would make them [1])
    return np.array(t.detach().cpu().numpy(), dtype=np.float32, order="C")


def _group(parent, name):
    """create_group without modification times, so regenerated files are byte-identical"""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    return h5py.Group(h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl))


def _dataset(parent, name, data):
    return parent.create_dataset(name, data=data, track_times=False)


def write(fx, case, path, vers):
    model, out = case["model"], case["out"]
    with h5py.File(path, "w") as f:
        a = f.attrs
        a["format"] = "moegrad-reference-fixture"
        a["format_version"] = FORMAT_VERSION
        a["module"] = fx.module
        a["args_json"] = json.dumps(fx.args_json, sort_keys=True)
        a["forward_json"] = json.dumps(fx.forward, sort_keys=True)
        a["mode"] = fx.mode
        a["seed"] = case["seed"]
        a["inputs_json"] = json.dumps([n for n, _ in fx.inputs])
        a["draws_json"] = json.dumps([[n, s, list(sh)] for n, s, sh in fx.draws])
        a["outputs_json"] = json.dumps(list(out.keys()))
        a["loss_json"] = json.dumps({"primary": fx.primary, "grad_output": "grad_output",
                                     "plus": fx.losses})
        a["loss_definition"] = (f"L = sum({fx.primary} * grad_output)"
                                + "".join(f" + sum({n})" for n in fx.losses))
        a["loss_value"] = float(case["loss"])
        a["deviations_json"] = json.dumps(fx.deviations)
        a["notes"] = fx.notes
        a["versions_json"] = json.dumps(vers, sort_keys=True)
        for k, val in vers.items():
            a["version_" + k.replace(":", "_").replace("-", "_")] = str(val)
        a["generator"] = "tests/reference/make_fixtures.py"

        mg = _group(f, "model")
        for key, t in model.state_dict().items():
            _dataset(mg, key, f32(t))
        for name, _ in fx.inputs:
            _dataset(f, name, f32(case["inputs"][name]))
        _dataset(f, "grad_output", f32(case["grad_output"]))
        for name, _, _ in fx.draws:
            _dataset(f, name, f32(case["draws"][name]))
            if name == "gumbel_exponential":
                # what F.gumbel_softmax adds to the logits: -log(E), computed in fp32 as torch does
                _dataset(f, "gumbel_noise", f32(-case["draws"][name].log()))
        for name, t in out.items():
            _dataset(f, name, f32(t))
        gg = _group(f, "grad")
        _dataset(gg, "x", f32(case["inputs"]["x"].grad))
        for key, p in model.named_parameters():
            grad = p.grad if p.grad is not None else torch.zeros_like(p)
            _dataset(gg, key, f32(grad))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", help="fixture names to (re)generate")
    ap.add_argument("--out", default=FIXTURE_DIR)
    opts = ap.parse_args()
    torch.set_num_threads(1)  # deterministic CPU reductions
    os.makedirs(opts.out, exist_ok=True)
    vers = versions()
    all_fx = fixtures()
    names = [fx.name for fx in all_fx]
    assert len(set(names)) == len(names)
    if opts.only:
        unknown = set(opts.only) - set(names)
        if unknown:
            sys.exit(f"unknown fixture(s): {sorted(unknown)}")
    total = 0
    for fx in all_fx:
        if opts.only and fx.name not in opts.only:
            continue
        for attempt in range(20):
            case = build_case(fx, attempt)
            if case is not None:
                break
        else:
            sys.exit(f"{fx.name}: no tie-free seed found")
        path = os.path.join(opts.out, fx.name + ".h5")
        write(fx, case, path, vers)
        size = os.path.getsize(path)
        total += size
        print(f"{fx.name:38s} {size:8d} B  seed={case['seed']} attempt={attempt}")
    print(f"total {total} B")


if __name__ == "__main__":
    main()
