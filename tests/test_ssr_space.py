import json
import random

import pytest
import torch

import rtseg
from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.flops import count_flops, count_params
from rtseg.spaces import get_space, load_arch
from tests.conftest import randomize_bn

SPACE = get_space("ssr")


def test_baseline1_matches_seed_table7_within_3pct():
    model = rtseg.build_model("baseline1")
    params = count_params(model)
    flops = count_flops(model, 512, 1024)
    assert abs(params - 0.96e6) / 0.96e6 < 0.03
    assert abs(flops - 11.2e9) / 11.2e9 < 0.03


@pytest.mark.parametrize("seed", range(3))
def test_arch_json_round_trip(tmp_path, seed):
    arch = SPACE.sample(random.Random(seed), num_classes=11)
    p = arch.save(tmp_path / "a.json")
    again = load_arch(p)
    assert again.to_dict() == arch.to_dict()
    assert json.loads(p.read_text())["schema_version"] == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_one_hot_single_path_supernet_equals_decoded_net(seed):
    """The weighted-sum case is in the space contract (tests/test_space_contract.py); single-path is SSR's own."""
    sample_paths = True
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
        load_arch(d)


def test_malformed_json_and_missing_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"space": "ssr",')
    with pytest.raises(RtsegError, match="not valid JSON"):
        load_arch(bad)
    with pytest.raises(RtsegError, match="not found"):
        load_arch(tmp_path / "missing.json")
