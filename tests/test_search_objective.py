"""The search's budget and shrinking logic on a real supernet with a deterministic per-op cost."""

import pytest
import torch

from rtseg.errors import RtsegError
from rtseg.latency.lut import Pricer
from rtseg.search.budget import check_feasible, fit_to_budget
from rtseg.search.objective import budget_penalty, level_regularizer, shrink, total_entropy
from rtseg.spaces import get_space

H, W = 64, 128
SPACE = get_space("ssr")


def cost(sig):
    """A stand-in for a LUT: proportional to the op's work, as latency roughly is."""
    hp = sig.spec.hparams
    if sig.type == "nb1d":
        s = hp["spatial"]
        return 1e-5 * (sig.spec.c_in * hp["c3x1"] + hp["c3x1"] * hp["c1x3"]) * sig.h * sig.w / (s * s) + 0.01 * hp["dilation"]
    return 1e-6 * sig.spec.c_in * sig.spec.c_out * sig.h * sig.w + 0.02


def test_budget_penalty_is_zero_inside_the_band_only():
    t = torch.tensor
    assert float(budget_penalty(t(0.9), 1.0)) == 0.0
    assert float(budget_penalty(t(1.1), 1.0)) > 0
    assert float(budget_penalty(t(0.5), 1.0)) > 0


def test_infeasible_budget_names_the_cheapest_latency():
    cheapest = Pricer(cost).price(SPACE.cheapest_arch(cost, H, W, 19), H, W).latency_ms
    with pytest.raises(RtsegError, match=f"{cheapest:.3f} ms"):
        check_feasible("ssr", H, W, 19, cheapest * 0.5, Pricer(cost))
    assert check_feasible("ssr", H, W, 19, cheapest * 1.01, Pricer(cost)).latency_ms == pytest.approx(cheapest)
    # no sampled arch is cheaper than the cheapest
    import random

    for seed in range(20):
        a = SPACE.sample(random.Random(seed))
        assert Pricer(cost).price(a, H, W).latency_ms >= cheapest - 1e-9


@pytest.mark.parametrize("fraction", [0.35, 0.6, 0.9])
def test_fit_to_budget_lands_in_band(fraction):
    sn = SPACE.supernet(19)
    dearest = SPACE.uniform_arch((7, 10), dilation=16)
    t = fraction * Pricer(cost).price(dearest, H, W).latency_ms
    fit = fit_to_budget(sn, H, W, t, None, Pricer(cost))
    assert 0.8 * t <= fit.cost.latency_ms <= t
    assert fit.cost.latency_ms == pytest.approx(Pricer(cost).price(fit.arch, H, W).latency_ms)


def test_expected_latency_is_differentiable_and_moves_toward_budget():
    sn = SPACE.supernet(19)
    opt = torch.optim.Adam(sn.arch_parameters(), lr=0.05)
    e0 = float(sn.expected_cost(cost, H, W))
    target = 0.7 * e0
    for _ in range(60):
        opt.zero_grad()
        loss = 5 * budget_penalty(sn.expected_cost(cost, H, W), target)
        loss.backward()
        opt.step()
    e1 = float(sn.expected_cost(cost, H, W))
    assert 0.8 * target <= e1 <= 1.0 * target


def _steps_to_discrete(kind, max_steps=400):
    """Arch steps until every decision that matters has one candidate, under a weak preference for
    candidate 0 of every decision (standing in for the task loss) plus the regularizer."""
    torch.manual_seed(0)
    sn = SPACE.supernet(19)
    opt = torch.optim.Adam(sn.arch_parameters(), lr=0.05)
    removed = []
    for step in range(max_steps):
        opt.zero_grad()
        active = sn.active_decisions()
        loss = -0.01 * sum(sn.probs(d.name)[0] for d in active)
        if kind != "none":
            loss = loss + level_regularizer(sn, active, kind, {"depth": 0.15, "dilation_spatial": 0.3, "channels": 0.3})
        loss.backward()
        opt.step()
        if step % 10 == 9:
            removed += shrink(sn, sn.decisions(), 0.1)
        if all(d.n_alive == 1 for d in sn.active_decisions()):
            return step + 1, sn, removed
    return None, sn, removed


@pytest.mark.parametrize("kind", ["ssr", "entropy", "none"])
def test_shrinking_reaches_a_discrete_arch(kind):
    steps, sn, removed = _steps_to_discrete(kind)
    assert steps is not None, f"{kind} + shrinking did not reach a discrete arch"
    assert total_entropy(sn, sn.active_decisions()) == 0.0
    # shrinking removed the weights of dropped (dilation, spatial) candidates
    n, i = next((n, i) for n, i in removed if n.endswith(".ds"))
    si, li = int(n.split(".")[0][5:]) - 1, int(n.split(".")[1][5:]) - 1
    assert len(list(sn.stages[si][li].candidates[i].parameters())) == 0
    # the decoded arch is the argmax and builds
    arch = sn.decode()
    SPACE.validate(arch)


def test_shrink_removes_only_weak_candidates():
    sn = SPACE.supernet(19)
    with torch.no_grad():
        a = sn.alphas["stage1__layer1__ds"]
        a.fill_(0.0)
        a[3] = 8.0  # sigmoid(8)/sigmoid(0) ~ 2: others at ~0.5 of the best -> kept
        a[5] = -8.0  # sigmoid(-8) ~ 3e-4 -> removed
    removed = shrink(sn, sn.decisions(), 0.1)
    assert ("stage1.layer1.ds", 5) in removed
    assert ("stage1.layer1.ds", 3) not in removed and ("stage1.layer1.ds", 0) not in removed
