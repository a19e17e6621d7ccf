"""The contract every registered search space keeps, tested once over all of them.

A space's examples are a few sampled archs (when it can sample) and its built-in archs; a space is
searchable when it has a supernet. What only one space does (SSR's single-path search, CAS's
decoding rule, DCNAS's path sampling...) is tested in that space's own file."""

from __future__ import annotations

import json
import random

import pytest
import torch

import rtseg
from rtseg.arch import builtin_arch_names
from rtseg.errors import RtsegError
from rtseg.flops import count_flops, sum_op_flops
from rtseg.ops import Op
from rtseg.spaces import SearchSpace, Supernet, get_space, load_arch, register_space, space_names
from rtseg.spaces.cas import CASSpace
from rtseg.spaces.cas_cells import CASConfig
from rtseg.spaces.dcnas import DCNASConfig, DCNASSpace
from tests.conftest import randomize_bn

SPACES = space_names()
#: Small configs for the supernet tests of the spaces that have a size (the contract does not depend on it).
SMALL = {"cas": CASSpace(CASConfig(stem=(8, 8, 8), width=4, layout="NRNR", nodes=2, ms_nodes=2, ms_width=8, ms_from=0)),
         "dcnas": DCNASSpace(DCNASConfig(width=4, layers=2, stem=8, head=8))}


def _searchable(space: SearchSpace) -> bool:
    try:
        space.supernet(3)
    except RtsegError:
        return False
    return True


SEARCHABLE = [name for name in SPACES if _searchable(get_space(name))]
#: Every registered space, and those whose options change its choices (not only its size): the contract holds for each.
VARIANTS = {**{name: get_space(name) for name in SPACES}, "ssr-plain": get_space("ssr", {"stdc": False})}
VARIANT_NAMES = list(VARIANTS)
SEARCHABLE_VARIANTS = [*SEARCHABLE, "ssr-plain"]


def cost(sig):
    """Any deterministic per-signature cost that tells the candidates apart."""
    return float(sig.spec.c_out + sig.h + sum(v for _, v in sig.spec.params if isinstance(v, int)))


def examples(space: SearchSpace, num_classes: int = 19, n: int = 3) -> list:
    """Sampled archs (every head in turn) when the space can sample, and its built-in archs."""
    archs = []
    try:
        archs += [space.sample(random.Random(seed), num_classes=num_classes, head=space.heads[seed % len(space.heads)])
                  for seed in range(n)]
    except RtsegError:
        pass
    archs += [a.with_(num_classes=num_classes) for a in map(load_arch, builtin_arch_names()) if a.space == space.name]
    assert archs, f"space {space.name} has neither samples nor built-in archs to test"
    return archs


def test_every_space_is_tested_and_names_itself():
    assert {"ssr", "cas", "dcnas", "peer"} <= set(SPACES)
    assert all(get_space(name).name == name for name in SPACES)
    assert {"ssr", "cas", "dcnas"} <= set(SEARCHABLE) and "peer" not in SEARCHABLE


def test_a_space_name_is_registered_once():
    with pytest.raises(ValueError, match="'ssr' registered twice"):
        register_space("ssr")(lambda: get_space("cas"))
    assert isinstance(get_space("ssr"), type(get_space("ssr")))  # the first registration still stands


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_examples_build_keep_resolution_and_round_trip(tmp_path, name):
    space = VARIANTS[name]
    for i, arch in enumerate(examples(space, num_classes=7)):
        path = arch.save(tmp_path / f"a{i}.json")
        again = load_arch(path)
        assert again.to_dict() == arch.to_dict() and json.loads(path.read_text())["schema_version"] == 1
        h, w = 2 * space.size_divisor, 4 * space.size_divisor
        with torch.no_grad():
            assert rtseg.build_model(again).eval()(torch.randn(1, 3, h, w)).shape == (1, 7, h, w)


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_signatures_match_the_modules_that_run(name):
    """The analytic signature list equals what hooks see in the built network: one concept, one place."""
    space = VARIANTS[name]
    for arch in examples(space, n=1):
        model = rtseg.build_model(arch).eval()
        seen = []

        def hook(mod, inputs, _out):
            seen.append(mod.spec.at(inputs[0].shape[-2], inputs[0].shape[-1]))

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, Op)]
        with torch.no_grad():
            model(torch.randn(1, 3, 128, 256))
        for hd in handles:
            hd.remove()
        assert seen == space.signatures(arch, 128, 256), arch.name


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_per_op_flops_add_up_to_the_network(name):
    space = VARIANTS[name]
    for arch in examples(space, n=1):
        assert sum_op_flops(space.signatures(arch, 64, 128)) == count_flops(rtseg.build_model(arch), 64, 128)


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_candidate_signatures_cover_every_example(name):
    space = VARIANTS[name]
    cands = {s.key for s in space.candidate_signatures(64, 128, 19, heads=space.heads)}
    for arch in examples(space, n=10):
        assert {s.key for s in space.signatures(arch, 64, 128)} <= cands


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_an_input_size_off_the_divisor_is_refused(name):
    space = VARIANTS[name]
    if space.size_divisor > 1:
        with pytest.raises(RtsegError, match=f"not a multiple of {space.size_divisor}"):
            space.check_input(space.size_divisor + 1, 2 * space.size_divisor)


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_a_space_that_is_not_searchable_says_so(name):
    space = VARIANTS[name]
    if name in SEARCHABLE_VARIANTS:
        assert isinstance(space.supernet(3), Supernet)
    else:
        for call in (lambda: space.supernet(3), lambda: space.sample(random.Random(0)), lambda: space.cheapest_arch(cost, 64, 128)):
            with pytest.raises(RtsegError, match="not searchable"):
                call()


@pytest.mark.parametrize("name,seed", [(n, s) for n in SEARCHABLE_VARIANTS for s in range(3)])
def test_one_hot_supernet_equals_decoded_net(name, seed):
    space = VARIANTS[name]
    arch = space.sample(random.Random(seed), num_classes=5)
    torch.manual_seed(seed)
    sn = space.supernet(5)
    randomize_bn(sn, seed)
    sn.eval()
    sn.fix(arch)
    net = space.build(arch)
    net.load_state_dict(sn.derive_weights(arch))
    net.eval()
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(sn(x), net(x), rtol=1e-5, atol=1e-5)
    assert sn.decode().genotype == arch.genotype
    assert sn.arch_from_choices(sn.choices_of(arch)).genotype == arch.genotype


@pytest.mark.parametrize("name", SEARCHABLE_VARIANTS)
def test_supernet_trains_and_separates_arch_and_weight_params(name):
    space = SMALL.get(name, VARIANTS[name])
    sn = space.supernet(4)
    arch_ids = {id(p) for p in sn.arch_parameters()}
    assert arch_ids and not arch_ids & {id(p) for p in sn.weight_parameters()}
    assert {d.level for d in sn.decisions()} >= set(sn.levels_to_shrink())
    sn.train()
    loss = sn(torch.randn(2, 3, 64, 64)).logsumexp(1).mean()
    (loss + sum(sn.regularization().values())).backward()
    # every decision that can still change the net gets a gradient (from the loss or the supernet's own terms)
    assert all(d.alpha.grad is not None for d in sn.active_decisions())
    for d in sn.decisions():
        p = sn.probs(d.name).detach()
        assert p.shape == (len(d.choices),) and float(p.sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", SEARCHABLE_VARIANTS)
def test_expected_cost_is_differentiable_and_exact_for_a_fixed_arch(name):
    space = VARIANTS[name]
    sn = space.supernet(19)
    e = sn.expected_cost(cost, 128, 256)
    e.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in sn.arch_parameters())
    arch = space.sample(random.Random(1))
    sn.fix(arch)
    expected = float(sn.expected_cost(cost, 128, 256).detach())
    assert expected == pytest.approx(sum(cost(s) for s in space.signatures(arch, 128, 256)), rel=1e-6)


@pytest.mark.parametrize("name", SEARCHABLE_VARIANTS)
def test_removal_frees_weights_zeroes_probability_and_keeps_the_last(name):
    space = SMALL.get(name, VARIANTS[name])
    sn = space.supernet(4)
    n_before = sum(p.numel() for p in sn.weight_parameters())
    dec = next(d for d in sn.active_decisions() if len(d.choices) > 2 and sn.can_remove(d.name, len(d.choices) - 1))
    k = len(dec.choices) - 1
    sn.remove(dec.name, k)
    sn.remove(dec.name, k)  # a removed candidate again: nothing happens
    assert float(sn.probs(dec.name).detach()[k]) == 0.0 and dec.n_alive == len(dec.choices) - 1
    assert sum(p.numel() for p in sn.weight_parameters()) <= n_before
    sn(torch.randn(1, 3, 64, 64))  # still runs
    for i in range(len(dec.choices) - 2):
        sn.remove(dec.name, i)
    with pytest.raises(ValueError, match="last candidate"):
        sn.remove(dec.name, len(dec.choices) - 2)


@pytest.mark.parametrize("name", SEARCHABLE_VARIANTS)
def test_cheapest_arch_is_valid_and_no_dearer_than_samples(name):
    space = VARIANTS[name]
    cheap = space.cheapest_arch(cost, 128, 256)
    space.validate(cheap)
    c = sum(cost(s) for s in space.signatures(cheap, 128, 256))
    assert all(c <= sum(cost(s) for s in space.signatures(space.sample(random.Random(i)), 128, 256)) for i in range(5))
