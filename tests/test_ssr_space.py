import json
import random

import pytest
import torch

import rtseg
from rtseg.arch import Arch, load_arch
from rtseg.errors import RtsegError
from rtseg.flops import count_flops, count_params, sum_op_flops
from rtseg.ops import Op
from rtseg.spaces import get_space
from tests.conftest import randomize_bn

SPACE = get_space("ssr")


def test_baseline1_matches_seed_table7_within_3pct():
    model = rtseg.build_model("baseline1")
    params = count_params(model)
    flops = count_flops(model, 512, 1024)
    assert abs(params - 0.96e6) / 0.96e6 < 0.03
    assert abs(flops - 11.2e9) / 11.2e9 < 0.03


@pytest.mark.parametrize("seed", range(4))
def test_sampled_archs_build_and_keep_resolution(seed):
    arch = SPACE.sample(random.Random(seed), num_classes=7, head="aggregation" if seed % 2 else "classifier")
    model = rtseg.build_model(arch).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 64, 128))
    assert y.shape == (1, 7, 64, 128)


@pytest.mark.parametrize("seed", range(3))
def test_arch_json_round_trip(tmp_path, seed):
    arch = SPACE.sample(random.Random(seed), num_classes=11)
    p = arch.save(tmp_path / "a.json")
    again = load_arch(p)
    assert again.to_dict() == arch.to_dict()
    assert json.loads(p.read_text())["schema_version"] == 1


@pytest.mark.parametrize("seed,sample_paths", [(0, False), (1, False), (2, False), (0, True), (1, True)])
def test_one_hot_supernet_equals_decoded_net(seed, sample_paths):
    arch = SPACE.sample(random.Random(seed), num_classes=5)
    torch.manual_seed(seed)
    sn = SPACE.supernet(5)
    sn.sample_paths = sample_paths
    randomize_bn(sn, seed)
    sn.eval()
    sn.fix(arch)
    net = SPACE.build(arch)
    net.load_state_dict(sn.derive_weights(arch))
    net.eval()
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(sn(x), net(x), rtol=1e-5, atol=1e-5)
    assert sn.decode().to_dict()["genotype"] == arch.to_dict()["genotype"]


def test_supernet_trains_and_separates_arch_and_weight_params():
    sn = SPACE.supernet(4)
    arch_ids = {id(p) for p in sn.arch_parameters()}
    assert arch_ids and not arch_ids & {id(p) for p in sn.weight_parameters()}
    loss = sn(torch.randn(2, 3, 32, 64)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in sn.arch_parameters())


def test_single_path_runs_one_sampled_path_and_reaches_its_arch_parameters():
    torch.manual_seed(0)
    sn = SPACE.supernet(4)
    sn.sample_paths = True
    calls = []
    for layer in (layer for stage in sn.stages for layer in stage):
        for cand in layer.candidates:
            cand.register_forward_hook(lambda m, i, o: calls.append(m))
    x = torch.randn(2, 3, 32, 64)
    sn(x).logsumexp(1).mean().backward()
    stage_layers = [len(st) for st in sn.stages]
    assert sum(st.fixed + 1 for st in sn.config.stages) <= len(calls) <= sum(stage_layers)  # one candidate per layer run
    ds_grads = [p.grad for n, p in sn.alphas.items() if n.endswith("__ds") and p.grad is not None and p.grad.abs().sum() > 0]
    assert len(ds_grads) == len(calls)  # exactly the layers that ran get an arch gradient
    sn.eval()
    calls.clear()
    with torch.no_grad():
        a, b = sn(x), sn(x)
    torch.testing.assert_close(a, b)  # evaluation runs the most likely path, deterministically
    decoded = sn.decode()
    assert len(calls) == 2 * sum(len(blocks) for blocks in decoded.genotype["stages"])  # the decoded net's layers, once per call


def test_signatures_match_the_modules_that_run():
    """The analytic signature list equals what hooks see in the built network: one concept, one place."""
    arch = SPACE.sample(random.Random(3), num_classes=19, head="aggregation")
    model = rtseg.build_model(arch).eval()
    seen = []

    def hook(mod, inputs, _out):
        seen.append(mod.spec.at(inputs[0].shape[-2], inputs[0].shape[-1]))

    for m in model.modules():
        if isinstance(m, Op):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 3, 128, 256))
    assert seen == SPACE.signatures(arch, 128, 256)


def test_per_op_flops_add_up_to_the_network():
    arch = SPACE.sample(random.Random(5))
    assert sum_op_flops(SPACE.signatures(arch, 128, 256)) == count_flops(rtseg.build_model(arch), 128, 256)


def test_candidate_signatures_cover_every_sampled_arch():
    cands = {s.key for s in SPACE.candidate_signatures(64, 128, 19, heads=("classifier", "aggregation"))}
    for seed in range(10):
        arch = SPACE.sample(random.Random(seed), head=random.Random(seed).choice(["classifier", "aggregation"]))
        assert {s.key for s in SPACE.signatures(arch, 64, 128)} <= cands


def test_expected_cost_of_a_fixed_arch_is_its_cost():
    arch = SPACE.sample(random.Random(1))
    sn = SPACE.supernet(19)
    sn.fix(arch)
    cost = lambda s: float(s.spec.c_out + s.h)  # noqa: E731  any deterministic per-signature cost
    expected = float(sn.expected_cost(cost, 128, 256))
    assert expected == pytest.approx(sum(cost(s) for s in SPACE.signatures(arch, 128, 256)), rel=1e-6)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda d: d["genotype"]["stages"][0][0].update(dilation=3), r"dilation = 3 is out of range"),
        (lambda d: d["genotype"]["stages"][1][0].update(c3x1=101), r"c3x1 = 101 is out of range"),
        (lambda d: d["genotype"]["stages"][0].clear(), r"must list 3 to 7 blocks"),
        (lambda d: d.update(num_classes=0), r"num_classes must be a positive integer"),
        (lambda d: d.update(space="nope"), r"unknown search space 'nope'"),
        (lambda d: d.update(schema_version=99), r"schema_version 99 is not supported"),
        (lambda d: d.pop("genotype"), r"lacks the required field 'genotype'"),
        (lambda d: d.update(head="fpn"), r"head 'fpn' is not one of"),
    ],
)
def test_invalid_archs_are_clear_errors(mutate, match):
    d = load_arch("baseline1").to_dict()
    mutate(d)
    with pytest.raises(RtsegError, match=match):
        Arch.from_dict(d)


def test_malformed_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"space": "ssr",')
    with pytest.raises(RtsegError, match="not valid JSON"):
        load_arch(bad)
    with pytest.raises(RtsegError, match="not found"):
        load_arch(tmp_path / "missing.json")
