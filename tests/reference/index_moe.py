#!/usr/bin/env python3
"""An index-based PyTorch MoE with the semantics of st-moe-pytorch 0.1.8's `MoE`.

The peer that bench/torch_moe_bench.py ("index.MoE", "index_loop.MoE") and bench/compare_gpu
time moegrad against: what a careful PyTorch user would write instead of st-moe's dense
dispatch/combine einsums over [b, n, e, capacity] tensors. Same routing, same numbers:

  gate      Linear(d, e, no bias) -> (optional Gumbel noise) -> softmax -> top-n (torch.topk);
            gates normalised over the top-n (clamp eps); choice j > 0 routed when
            U[0,1) < gate / threshold (the draw is the same `zeros_like(gates).uniform_()`
            st makes, so seeded runs draw the same numbers); capacity per sequence
            max(min(n, int(n * cf / e)), 4); slots filled choice-major, within a choice in
            sequence order, choice j's positions offset by the kept counts of choices < j;
            balance loss from the first choices kept after capacity (st's `mask_1` view),
            router z-loss from the un-noised logits; combine weight = normalised gate of a
            kept choice, not renormalised; straight-through dispatch scale (1 + w) - w.detach().
  dispatch  a gather: every slot of the padded expert-major buffer [e, b * capacity, d] reads
            its token's row (x.index_select); empty slots read token 0 and are scaled by 0.
  experts   GEGLU experts (Linear(d, 2h) -> gelu(gate) * x * mult_bias -> Linear(h, d)) with
            the weights stacked per expert: experts="bmm" runs torch.baddbmm on the padded
            buffer (no host synchronisation); experts="loop" compacts the kept rows in
            expert-major order and runs one F.linear pair per expert (per-expert row counts
            copied to the host).
  combine   index_add of the expert outputs times their combine weights into the token rows.

IndexMoE.from_st(st_moe) copies an st_moe_pytorch.MoE's weights, thresholds, capacity factors
and loss coefficients. Running this file checks that IndexMoE matches st_moe_pytorch.MoE
(outputs, aux losses and the gradients of x and of every weight, to 1e-5) in train mode with
capacity drops, with and without noise, in eval mode, for top-2 and top-n > 2, for both
expert implementations, on CPU and (if present) CUDA:

  build/reference-venv/bin/python tests/reference/index_moe.py      # exit 0 when all match
"""
import math
import sys

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

MIN_EXPERT_CAPACITY = 4


def _log(t, eps=1e-20):
    return torch.log(t.clamp(min=eps))


def _gumbel_noise(t):
    noise = torch.zeros_like(t).uniform_(0, 1)
    return -_log(-_log(noise))


class IndexMoE(nn.Module):
    """st_moe_pytorch.MoE(dim, num_experts, expert_hidden_mult, ...) computed by gather + per-expert
    matmul + index_add. forward(x [b, n, d]) -> (outputs, total_aux_loss, balance_loss, router_z_loss)."""

    def __init__(self, dim, num_experts=16, expert_hidden_mult=4, threshold_train=0.2, threshold_eval=0.2,
                 capacity_factor_train=1.25, capacity_factor_eval=2., gating_top_n=2, balance_loss_coef=1e-2,
                 router_z_loss_coef=1e-3, straight_through_dispatch_tensor=True, eps=1e-9, experts="bmm",
                 hidden_dim=None):
        super().__init__()
        assert gating_top_n >= 2, "must be 2 or more experts"
        assert experts in ("bmm", "loop"), experts
        e = num_experts
        h = hidden_dim if hidden_dim is not None else int(dim * expert_hidden_mult * 2 / 3)  # st's rule
        self.dim, self.num_experts, self.hidden_dim, self.top_n = dim, e, h, gating_top_n
        self.eps = eps
        self.capacity_factor_train, self.capacity_factor_eval = capacity_factor_train, capacity_factor_eval
        self.balance_loss_coef, self.router_z_loss_coef = balance_loss_coef, router_z_loss_coef
        self.straight_through = straight_through_dispatch_tensor
        self.experts_impl = experts

        def thr(t):
            t = t if isinstance(t, tuple) else (t,) * (gating_top_n - 1)
            assert len(t) == gating_top_n - 1
            return torch.tensor([eps, *t])

        self.register_buffer("threshold_train", thr(threshold_train))
        self.register_buffer("threshold_eval", thr(threshold_eval))
        self.to_gates = nn.Linear(dim, e, bias=False)
        # Per-expert Linear weights as st stores them ([out, in]), stacked over the experts; st's
        # init: weight and bias ~ U(+-out_features^-0.5).
        self.w_in = nn.Parameter(torch.empty(e, 2 * h, dim).uniform_(-(2 * h) ** -0.5, (2 * h) ** -0.5))
        self.b_in = nn.Parameter(torch.empty(e, 2 * h).uniform_(-(2 * h) ** -0.5, (2 * h) ** -0.5))
        self.mult_bias = nn.Parameter(torch.ones(e, h))
        self.w_out = nn.Parameter(torch.empty(e, dim, h).uniform_(-dim ** -0.5, dim ** -0.5))
        self.b_out = nn.Parameter(torch.empty(e, dim).uniform_(-dim ** -0.5, dim ** -0.5))
        self.last_kept = None    # kept (token, choice) pairs of the last forward (0-d tensors, read after timing)
        self.last_routed = None  # routed pairs (first choices + second.. choices that passed the threshold)

    @classmethod
    def from_st(cls, moe, experts="bmm"):
        """An IndexMoE with an st_moe_pytorch.MoE's configuration and a copy of its weights."""
        gate = moe.gate
        first = moe.experts.experts[0].net
        assert len(first) == 3, "st expert with prenorm is not supported"
        d, e = moe.dim, moe.num_experts
        h = first[-1].in_features
        m = cls(d, num_experts=e, hidden_dim=h, gating_top_n=gate.top_n,
                capacity_factor_train=gate.capacity_factor_train, capacity_factor_eval=gate.capacity_factor_eval,
                balance_loss_coef=moe.balance_loss_coef, router_z_loss_coef=moe.router_z_loss_coef,
                straight_through_dispatch_tensor=gate.straight_through_dispatch_tensor, eps=gate.eps,
                experts=experts)
        nets = [ex.net for ex in moe.experts.experts]
        w = moe.gate.to_gates.weight
        with torch.no_grad():
            m.threshold_train.copy_(gate.threshold_train)
            m.threshold_eval.copy_(gate.threshold_eval)
            m.to_gates.weight.copy_(w)
            m.w_in.copy_(torch.stack([n[0].weight for n in nets]))
            m.b_in.copy_(torch.stack([n[0].bias for n in nets]))
            m.mult_bias.copy_(torch.stack([n[1].mult_bias if isinstance(n[1].mult_bias, torch.Tensor)
                                           else torch.full((h,), float(n[1].mult_bias)) for n in nets]))
            m.w_out.copy_(torch.stack([n[-1].weight for n in nets]))
            m.b_out.copy_(torch.stack([n[-1].bias for n in nets]))
        m.to(device=w.device, dtype=w.dtype)
        m.train(moe.training)
        return m

    # -- routing: st's TopNGating, ending in slot indices instead of [b, n, e, c] tensors ------------
    def route(self, x, noise_gates=False, noise_mult=1.):
        """Returns (slot [k, T] long, keep [k, T] bool, w [k, T] combine weights, capacity, balance, z).
        slot = (expert * b + batch) * capacity + position, the row in the padded buffer."""
        b, n, _ = x.shape
        e, k, eps = self.num_experts, self.top_n, self.eps
        suffix = "train" if self.training else "eval"
        threshold = getattr(self, f"threshold_{suffix}")
        cf = getattr(self, f"capacity_factor_{suffix}")
        cap = max(min(n, int((n * cf) / e)), MIN_EXPERT_CAPACITY)

        logits = self.to_gates(x)  # [b, n, e]
        noised = logits
        if noise_gates:
            noised = noised + _gumbel_noise(noised) * noise_mult
        raw = noised.softmax(dim=-1)
        values, indices = torch.topk(raw, k=k, dim=-1)  # [b, n, k]
        # The same ops as st, in the same layout, so that the uniform draw below lands alike.
        gates = rearrange(values, "... k -> k ...")  # [k, b, n]
        idx = rearrange(indices, "... k -> k ...")
        gates = gates / reduce(gates, "k ... -> 1 ...", "sum").clamp(min=eps)
        probs = torch.zeros_like(gates).uniform_(0., 1.)
        should_route = probs < (gates / rearrange(threshold, "k -> k 1 1").clamp(min=eps))
        should_route[0, ...] = True

        # Positions: exclusive cumulative count along the sequence per (choice, batch, expert),
        # offset by the kept counts of the earlier choices.
        routed = F.one_hot(idx, e).to(torch.int32) * should_route.unsqueeze(-1)  # [k, b, n, e]
        cs = routed.cumsum(dim=2, dtype=torch.int32) - routed
        base = torch.zeros(b, 1, e, dtype=torch.int32, device=x.device)
        keeps, positions = [], []
        for j in range(k):
            pos = (cs[j] + base).gather(-1, idx[j].unsqueeze(-1)).squeeze(-1)  # [b, n]
            keep = should_route[j] & (pos < cap)
            base = base + (routed[j] * keep.unsqueeze(-1)).sum(dim=1, keepdim=True, dtype=torch.int32)
            keeps.append(keep)
            positions.append(pos)
        keep = torch.stack(keeps)  # [k, b, n]
        pos = torch.stack(positions)
        w = gates * keep.to(gates.dtype)  # combine weights, zero where not kept
        self.last_routed = should_route.sum()

        if self.training:
            first_kept = F.one_hot(idx[0], e).to(x.dtype) * keep[0].unsqueeze(-1).to(x.dtype)  # st's mask_1
            density_1 = reduce(first_kept, "... n e -> ... e", "mean")
            density_1_proxy = reduce(raw, "... n e -> ... e", "mean")
            balance = (density_1_proxy * density_1).mean() * float(e ** 2)
            z = torch.square(torch.logsumexp(logits, dim=-1)).mean()
        else:
            balance = z = torch.zeros((1,), dtype=x.dtype, device=x.device)

        batch = torch.arange(b, device=x.device).view(1, b, 1)
        slot = (idx * b + batch) * cap + pos.to(torch.long)  # [k, b, n]
        return slot.reshape(k, b * n), keep.reshape(k, b * n), w.reshape(k, b * n), cap, balance, z

    def _experts_bmm(self, buf):  # buf [e, m, d] -> [e, m, d]
        a1 = torch.baddbmm(self.b_in.unsqueeze(1), buf, self.w_in.transpose(1, 2))
        a, gate = a1.chunk(2, dim=-1)
        act = F.gelu(gate) * a * self.mult_bias.unsqueeze(1)
        return torch.baddbmm(self.b_out.unsqueeze(1), act, self.w_out.transpose(1, 2))

    def forward(self, x, noise_gates=False, noise_mult=1.):
        b, n, d = x.shape
        e, k, T = self.num_experts, self.top_n, b * n
        slot, keep, w, cap, balance, z = self.route(x, noise_gates, noise_mult)
        S = e * b * cap
        xf = x.reshape(T, d)
        tok = torch.arange(T, device=x.device).expand(k, T)
        scale = (1. + w) - w.detach() if self.straight_through else torch.ones_like(w)
        self.last_kept = keep.sum()
        trash = torch.full_like(slot, S)
        slot_t = torch.where(keep, slot, trash).reshape(-1)  # dropped choices -> the trash slot S
        if self.experts_impl == "bmm":
            # slot -> token map of the padded buffer (empty slots: token 0, scale 0, weight 0).
            with torch.no_grad():
                slot_tok = torch.zeros(S + 1, dtype=torch.long, device=x.device)
                slot_tok.scatter_(0, slot_t, tok.reshape(-1))
                slot_tok = slot_tok[:S]
            zeros = torch.zeros(S + 1, dtype=x.dtype, device=x.device)
            slot_scale = zeros.scatter(0, slot_t, scale.reshape(-1))[:S]
            slot_w = zeros.scatter(0, slot_t, w.reshape(-1))[:S]
            buf = xf.index_select(0, slot_tok) * slot_scale.unsqueeze(-1)  # gather: [S, d]
            y = self._experts_bmm(buf.view(e, b * cap, d)).reshape(S, d)
            out = torch.zeros(T, d, dtype=x.dtype, device=x.device).index_add(0, slot_tok, y * slot_w.unsqueeze(-1))
        else:
            # Kept (choice, token) pairs in expert-major slot order, then one matmul pair per expert.
            kept = keep.reshape(-1)
            order = torch.argsort(slot_t[kept])  # slots are distinct: the order is unique
            k_tok = tok.reshape(-1)[kept][order]
            k_scale = scale.reshape(-1)[kept][order]
            k_w = w.reshape(-1)[kept][order]
            k_exp = torch.div(slot_t[kept][order], b * cap, rounding_mode="floor")
            counts = torch.bincount(k_exp, minlength=e).tolist()  # host copy
            rows = xf.index_select(0, k_tok) * k_scale.unsqueeze(-1)
            # unbind, not w[i]: one backward that stacks the experts' gradients, instead of a
            # weight-sized zero tensor per expert (SelectBackward).
            w_in, b_in, mult_bias, w_out, b_out = (p.unbind(0) for p in (self.w_in, self.b_in, self.mult_bias,
                                                                           self.w_out, self.b_out))
            outs = []
            for i, part in enumerate(rows.split(counts)):
                if part.shape[0] == 0:
                    continue
                a1 = F.linear(part, w_in[i], b_in[i])
                a, gate = a1.chunk(2, dim=-1)
                outs.append(F.linear(F.gelu(gate) * a * mult_bias[i], w_out[i], b_out[i]))
            y = torch.cat(outs) if outs else rows
            out = torch.zeros(T, d, dtype=x.dtype, device=x.device).index_add(0, k_tok, y * k_w.unsqueeze(-1))
        total = balance * self.balance_loss_coef + z * self.router_z_loss_coef
        return out.view(b, n, d), total, balance, z


# -- the equivalence check against st_moe_pytorch.MoE ----------------------------------------------

def _st_grads(moe):
    """st's parameter gradients in IndexMoE's layout (zeros where a parameter got none)."""
    nets = [ex.net for ex in moe.experts.experts]

    def g(p):
        return p.grad if p.grad is not None else torch.zeros_like(p)

    return {
        "to_gates.weight": g(moe.gate.to_gates.weight),
        "w_in": torch.stack([g(n[0].weight) for n in nets]),
        "b_in": torch.stack([g(n[0].bias) for n in nets]),
        "mult_bias": torch.stack([g(n[1].mult_bias) for n in nets]),
        "w_out": torch.stack([g(n[-1].weight) for n in nets]),
        "b_out": torch.stack([g(n[-1].bias) for n in nets]),
    }


def _close(name, a, b, tol, report, worst):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if a.shape != b.shape:
        report.append(f"{name}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        return False
    err = (a - b).abs().max().item() if a.numel() else 0.0
    scale = max(1.0, b.abs().max().item() if b.numel() else 0.0)
    worst[0] = max(worst[0], err / scale)
    ok = err <= tol * scale
    if not ok:
        report.append(f"{name}: max |diff| {err:.3g} > {tol:g} * {scale:.3g}")
    return ok


def check_case(b, n, d, e, k, mult, mode="train", noise=False, experts="bmm", device="cpu", seed=0, tol=1e-5):
    """One comparison; returns (ok, capacity, kept pairs, routed pairs, worst error, messages)."""
    from st_moe_pytorch import MoE

    torch.manual_seed(seed)
    st = MoE(dim=d, num_experts=e, gating_top_n=k, expert_hidden_mult=mult).to(device)
    ix = IndexMoE.from_st(st, experts=experts).to(device)
    st.train(mode == "train")
    ix.train(mode == "train")
    gen = torch.Generator().manual_seed(seed + 1)
    x0 = torch.randn(b, n, d, generator=gen).to(device)
    g = torch.randn(b, n, d, generator=gen).to(device)
    results = []
    for model in (st, ix):
        x = x0.clone().requires_grad_(True)
        torch.manual_seed(seed + 2)  # the same uniform (and Gumbel) draws on both sides
        out, total, balance, z = model(x, noise_gates=noise)
        loss = (out * g).sum() + total
        loss.backward()
        results.append((out, total, balance, z, x.grad))
    report, worst = [], [0.0]
    ok = True
    for name, a, ref in zip(("outputs", "total_aux_loss", "balance_loss", "router_z_loss", "dL/dx"),
                            results[1], results[0]):
        ok &= _close(name, a, ref, tol, report, worst)
    st_g = _st_grads(st)
    for name, p in ix.named_parameters():
        ok &= _close(f"dL/d{name}", p.grad, st_g[name], tol, report, worst)
    cap = max(min(n, int(n * (1.25 if mode == "train" else 2.0) / e)), MIN_EXPERT_CAPACITY)
    return ok, cap, ix.last_kept.item(), ix.last_routed.item(), worst[0], report


def main():
    cases = [  # (b, n, d, e, k, mult, mode, noise)
        (2, 32, 16, 4, 2, 1.5, "train", False),
        (2, 48, 24, 8, 3, 1.0, "train", False),
        (3, 40, 16, 6, 4, 2.25, "train", True),
        (2, 40, 16, 4, 2, 1.5, "eval", False),
        (1, 64, 32, 16, 8, 0.75, "train", False),
    ]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    failed = 0
    total = 0
    for dev in devices:
        for experts in ("bmm", "loop"):
            for i, (b, n, d, e, k, mult, mode, noise) in enumerate(cases):
                ok, cap, kept, routed, worst, report = check_case(b, n, d, e, k, mult, mode, noise, experts, dev,
                                                                  seed=10 * i)
                ok = ok and kept < routed  # every case must drop routed choices for capacity
                total += 1
                failed += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {dev:<4} {experts:<4} b{b} n{n} d{d} e{e} k{k} {mode:<5}"
                      f"{' noise' if noise else '      '} capacity {cap}: kept {kept} of {routed} routed "
                      f"(token, choice) pairs, worst error {worst:.1e}"
                      + ("" if ok else "\n       " + "\n       ".join(report or ["no capacity drop"])))
    print(f"index_moe: {total - failed} passed, {failed} failed (IndexMoE vs st_moe_pytorch.MoE, torch "
          f"{torch.__version__}, tolerance 1e-5 of max(1, max |reference|))")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
