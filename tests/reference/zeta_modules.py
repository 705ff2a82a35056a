"""Ports of the three zeta (kyegomez/zeta, `zetascale`) modules that moegrad reproduces.

zeta is a very heavy package (it pulls in dozens of unrelated dependencies), so the reference
fixtures do not install it.  Instead, the three classes below are transcribed from the zeta
source described in shared/spec/moe-semantics.md §4 (kyegomez/zeta @ fe82c50):

  * Experts     - zeta/nn/modules/expert.py        (current shapes, spec §7 S1/S2)
  * MoERouter   - zeta/nn/modules/moe_router.py    (softmax and gumbel only, spec §7 S3: see below)
  * TopNGating  - zeta/nn/modules/top_n_gating.py  (verbatim, INCLUDING bug C1)

Everything that is not mentioned as a deviation is a line-by-line transcription; names of
parameters and buffers are the originals', so `state_dict()` keys match zeta's.
"""

from functools import partial
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from beartype import beartype
from colt5_attention import topk as maybe_differentiable_topk
from einops import rearrange, reduce
from torch import Tensor, nn
from torch.nn import Module


# --------------------------------------------------------------------------------------------
# zeta/nn/modules/expert.py
# --------------------------------------------------------------------------------------------


class Experts(nn.Module):
    """zeta `Experts(dim, experts=16, custom_experts=None)`.

    w1 [E,d,2d], w2 [E,2d,2d], w3 [E,2d,d], all torch.randn (N(0,1), unscaled), created in that
    order.  act = LeakyReLU(0.01, inplace=True).  Input is [E,n,d] (expert axis first; a size-1
    leading axis broadcasts through torch.einsum).  `custom_experts` is accepted and unused, as
    in zeta.
    """

    def __init__(self, dim: int, experts: int = 16, custom_experts=None):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(experts, dim, dim * 2))
        self.w2 = nn.Parameter(torch.randn(experts, dim * 2, dim * 2))
        self.w3 = nn.Parameter(torch.randn(experts, dim * 2, dim))
        self.act = nn.LeakyReLU(inplace=True)

    def forward(self, x):
        hidden1 = self.act(torch.einsum("end,edh->enh", x, self.w1))
        hidden2 = self.act(torch.einsum("end,edh->enh", hidden1, self.w2))
        out = torch.einsum("end,edh->enh", hidden2, self.w3)
        return out


# --------------------------------------------------------------------------------------------
# zeta/nn/modules/moe_router.py
# --------------------------------------------------------------------------------------------


class MoERouter(nn.Module):
    """zeta `MoERouter(dim, num_experts, hidden_layers=None, mechanism='softmax')`.

    DEVIATIONS FROM THE ORIGINAL (moegrad's adopted behaviour, spec §7 S3):
      * without hidden layers the router is `Linear(dim, num_experts)`; the original builds
        `Linear(dim, dim)` (its intended `Linear(dim, num_experts)` is commented out), so its
        output is [B,SEQ,dim] instead of the documented [B,SEQ,E];
      * 'softmax' is taken over the LAST (expert) dim; the original uses `softmax(x, dim=1)`,
        i.e. over the sequence;
      * only 'softmax' and 'gumbel' are implemented; any other name raises ValueError (the
        original silently returns the raw logits for unknown names and has 6 further,
        undocumented mechanisms).
    Unchanged: `hidden_layers` is a list `[H0, H1, ...]` giving
    `Linear(d,H0), [ReLU, Linear(Hi,Hi+1)]*, ReLU, Linear(H-1,e)` in `self.layers` (so the
    state_dict keys are `layers.<i>.weight/bias` as in zeta), default nn.Linear init, and
    'gumbel' is `F.gumbel_softmax(x, hard=True)` (tau=1, dim=-1), whose only random draw is
    `torch.empty_like(logits).exponential_()`.
    """

    def __init__(
        self,
        dim: int,
        num_experts: int,
        hidden_layers: Optional[List[int]] = None,
        mechanism: str = "softmax",
        *args,
        **kwargs,
    ):
        super().__init__()
        self.dim = dim
        self.num_experts = num_experts
        self.hidden_layers = hidden_layers
        self.mechanism = mechanism
        if mechanism not in ("softmax", "gumbel"):
            raise ValueError(f"unknown mechanism {mechanism!r}: expected 'softmax' or 'gumbel'")

        if hidden_layers:
            self.layers = nn.ModuleList()
            self.layers.append(nn.Linear(self.dim, self.hidden_layers[0]))

            for i in range(len(hidden_layers) - 1):
                self.layers.append(nn.ReLU())
                self.layers.append(nn.Linear(hidden_layers[i], hidden_layers[i + 1]))
            self.layers.append(nn.ReLU())
            self.layers.append(nn.Linear(hidden_layers[-1], self.num_experts))
        else:
            # moegrad (spec §7 S3): Linear(dim, num_experts); zeta has Linear(dim, dim) here.
            self.layers = nn.ModuleList([nn.Linear(self.dim, self.num_experts)])

    def forward(self, x: Tensor, *args, **kwargs):
        for layer in self.layers:
            x = layer(x)

        if self.mechanism == "softmax":
            # moegrad (spec §7 S3): over the expert (last) dim; zeta has F.softmax(x, dim=1).
            return F.softmax(x, dim=-1)

        elif self.mechanism == "gumbel":
            return F.gumbel_softmax(x, hard=True)

        raise ValueError(f"unknown mechanism {self.mechanism!r}")


# --------------------------------------------------------------------------------------------
# zeta/nn/modules/top_n_gating.py  (verbatim transcription)
# --------------------------------------------------------------------------------------------


def cast_tuple(el, len=1):
    return el if isinstance(el, tuple) else ((el,) * len)


def log(t, eps=1e-20):
    return torch.log(t.clamp(min=eps))


def gumbel_noise(t):
    noise = torch.zeros_like(t).uniform_(0, 1)
    return -log(-log(noise))


def cumsum_exclusive(t, dim=-3):
    assert dim < 0
    num_pad_dims = -dim - 1
    pre_padding = (0, 0) * num_pad_dims
    return F.pad(t, (*pre_padding, 1, -1)).cumsum(dim=dim)


def safe_one_hot(indexes, max_length):
    max_index = indexes.max() + 1
    one_hot_classes = max(max_index + 1, max_length)
    return F.one_hot(indexes, one_hot_classes)[..., :max_length]


class TopNGating(Module):
    """zeta TopNGating: ST TopNGating plus `min_expert_capacity`, and with zeta's bug C1
    (`prev_expert_count` is NOT accumulated over the choices; identical to ST for top_n=2).
    moegrad adopts ST's cumulative offset, so the fixtures only use top_n=2."""

    @beartype
    def __init__(
        self,
        dim,
        num_gates,
        eps=1e-9,
        top_n=2,
        threshold_train: Union[float, Tuple[float, ...]] = 0.2,
        threshold_eval: Union[float, Tuple[float, ...]] = 0.2,
        capacity_factor_train=1.25,
        capacity_factor_eval=2.0,
        straight_through_dispatch_tensor=True,
        differentiable_topk=False,
        differentiable_topk_fused=True,
        min_expert_capacity: int = 4,
    ):
        super().__init__()
        self.eps = eps
        self.num_gates = num_gates
        self.min_expert_capacity = min_expert_capacity
        self.to_gates = nn.Linear(dim, num_gates, bias=False)

        self.differentiable_topk = differentiable_topk

        self.topk = partial(
            maybe_differentiable_topk,
            non_differentiable=not differentiable_topk,
            fused=differentiable_topk_fused,
        )

        assert top_n >= 2, "must be 2 or more experts"
        self.top_n = top_n
        top_n_minus_1 = top_n - 1

        threshold_train = cast_tuple(threshold_train, top_n_minus_1)
        threshold_eval = cast_tuple(threshold_eval, top_n_minus_1)

        assert len(threshold_train) == len(threshold_eval) == top_n_minus_1

        self.register_buffer("threshold_train", torch.tensor([eps, *threshold_train]))
        self.register_buffer("threshold_eval", torch.tensor([eps, *threshold_eval]))

        self.capacity_factor_train = capacity_factor_train
        self.capacity_factor_eval = capacity_factor_eval

        self.straight_through_dispatch_tensor = straight_through_dispatch_tensor
        self.register_buffer("zero", torch.zeros((1,)), persistent=False)

    def forward(self, x, noise_gates=False, noise_mult=1.0):
        *_, b, group_size, dim, dtype, top_n, num_gates, eps = (
            *x.shape,
            x.dtype,
            self.top_n,
            self.num_gates,
            self.eps,
        )

        suffix = "train" if self.training else "eval"

        threshold = getattr(self, f"threshold_{suffix}")
        capacity_factor = getattr(self, f"capacity_factor_{suffix}")

        expert_capacity = min(group_size, int((group_size * capacity_factor) / num_gates))
        expert_capacity = max(expert_capacity, self.min_expert_capacity)
        expert_capacity_f = float(expert_capacity)

        gate_logits = self.to_gates(x)

        maybe_noised_gate_logits = gate_logits

        if noise_gates:
            noise = gumbel_noise(maybe_noised_gate_logits)
            maybe_noised_gate_logits = maybe_noised_gate_logits + noise * noise_mult

        raw_gates = maybe_noised_gate_logits.softmax(dim=-1)

        topk_return = self.topk(raw_gates, k=top_n)

        gate_indices = topk_return.indices

        if self.differentiable_topk:
            gates = topk_return.coor_descent_values
        else:
            gates = topk_return.values

        gates = rearrange(gates, "... k -> k ...")
        gate_indices = rearrange(gate_indices, "... k -> k ...")

        one_hot_gate_indices = F.one_hot(gate_indices, num_gates)
        mask = one_hot_gate_indices.float()

        mask_1 = mask[0]  # needed for balancing loss (a VIEW: mutated by the capacity drop)

        denom = reduce(gates, "k ... -> 1 ...", "sum").clamp(min=eps)
        gates = gates / denom

        probs = torch.zeros_like(gates).uniform_(0.0, 1.0)

        threshold = rearrange(threshold, "k -> k 1 1")
        should_route = probs < (gates / threshold.clamp(min=eps))

        should_route[0, ...] = True

        mask *= rearrange(should_route.float(), "... -> ... 1")

        mask_cumsum = cumsum_exclusive(mask, dim=-2)

        positions = []
        prev_expert_count = 0.0

        for n in range(self.top_n):
            position_in_expert = (mask_cumsum[n] + prev_expert_count) * mask[n]

            mask[n] *= (position_in_expert < expert_capacity_f).float()

            # zeta bug C1 (spec §7): not accumulated (ST adds `+ prev_expert_count`).
            prev_expert_count = reduce(mask[n], "... n e -> ... 1 e", "sum")

            position_in_expert = reduce(position_in_expert, "... n e -> ... n", "sum")
            positions.append(position_in_expert)

        positions = torch.stack(positions)

        mask_flat = reduce(mask, "... n e -> ... n", "sum")

        gates = gates * mask_flat

        N = None

        gates = gates[..., N, N]
        mask_flat = mask_flat[..., N, N]
        one_hot_gate_indices = one_hot_gate_indices[..., N]
        safe_one_hot_gates = safe_one_hot(positions.long(), expert_capacity)[..., N, :]

        combine_tensor = reduce(
            gates * mask_flat * one_hot_gate_indices * safe_one_hot_gates,
            "k ... -> ...",
            "sum",
        )

        dispatch_tensor = combine_tensor.bool().type(dtype)

        if self.straight_through_dispatch_tensor:
            dispatch_tensor = dispatch_tensor + combine_tensor - combine_tensor.detach()

        if self.training:
            density_1 = reduce(mask_1, "... n e -> ... e", "mean")
            density_1_proxy = reduce(raw_gates, "... n e -> ... e", "mean")

            balance_loss = (density_1_proxy * density_1).mean() * float(num_gates**2)
        else:
            balance_loss = self.zero

        if self.training:
            router_z_loss = torch.logsumexp(gate_logits, dim=-1)
            router_z_loss = torch.square(router_z_loss)
            router_z_loss = router_z_loss.mean()
        else:
            router_z_loss = self.zero

        return dispatch_tensor, combine_tensor, balance_loss, router_z_loss
