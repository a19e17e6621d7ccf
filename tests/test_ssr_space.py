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

PLAIN = get_space("ssr", {"stdc": False})  # the SSR paper's own space: NB-1D layers only
STDC_SPACE = get_space("ssr")  # the default: STDC modules are a layer choice too


def test_baseline1_matches_seed_table7_within_3pct():
    model = rtseg.build_model("baseline1")
    params = count_params(model)
    flops = count_flops(model, 512, 1024)
    assert abs(params - 0.96e6) / 0.96e6 < 0.03
    assert abs(flops - 11.2e9) / 11.2e9 < 0.03


@pytest.mark.parametrize("seed", range(3))
def test_arch_json_round_trip(tmp_path, seed):
    arch = PLAIN.sample(random.Random(seed), num_classes=11)
    p = arch.save(tmp_path / "a.json")
    again = load_arch(p)
    assert again.to_dict() == arch.to_dict()
    assert json.loads(p.read_text())["schema_version"] == 1


@pytest.mark.parametrize("seed,space", [(0, PLAIN), (1, PLAIN), (0, STDC_SPACE), (2, STDC_SPACE)], ids=["0", "1", "stdc-0", "stdc-2"])
def test_one_hot_single_path_supernet_equals_decoded_net(seed, space):
    """The weighted-sum case is in the space contract (tests/test_space_contract.py); single-path is SSR's own."""
    sample_paths = True
    arch = space.sample(random.Random(seed), num_classes=5)
    torch.manual_seed(seed)
    sn = space.supernet(5)
    sn.sample_paths = sample_paths
    randomize_bn(sn, seed)
    sn.eval()
    sn.fix(arch)
    net = space.build(arch)
    net.load_state_dict(sn.derive_weights(arch))
    net.eval()
    x = torch.randn(2, 3, 64, 128)
    with torch.no_grad():
        torch.testing.assert_close(sn(x), net(x), rtol=1e-5, atol=1e-5)
    assert sn.decode().to_dict()["genotype"] == arch.to_dict()["genotype"]


def test_single_path_runs_one_sampled_path_and_reaches_its_arch_parameters():
    torch.manual_seed(0)
    sn = PLAIN.supernet(4)
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
        (lambda d: d["genotype"]["stages"][0][0].update(op="mbconv"), r"op = 'mbconv' is unknown; the only layer op is 'stdc'"),
        (lambda d: d["genotype"]["stages"][0].__setitem__(0, {"op": "stdc", "spatial": 1, "c3x1": 64}),
         r"STDC layer, whose width is the stage's; it takes only op and spatial, not c3x1"),
        (lambda d: d["genotype"]["stages"][1].__setitem__(2, {"op": "stdc", "spatial": 4}), r"stages\[1\]\[2\]\.spatial = 4 is out of range"),
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


def test_stdc_layers_are_on_by_default_and_every_ssr_space_builds_them():
    """STDC layers are two choices per layer at the end of the (dilation, spatial) list, so the plain
    space's choices (and the records searched in it) keep their indices; an arch with STDC layers is
    self-describing, so the plain space still validates and builds it, but its supernet cannot hold it."""
    assert STDC_SPACE.options() == {} and get_space("ssr", {"stdc": True}).options() == {}
    assert PLAIN.options() == {"stdc": False} and PLAIN.unrecorded_options() == {"stdc": False}
    assert STDC_SPACE.config.ds_choices[: len(PLAIN.config.ds_choices)] == PLAIN.config.ds_choices
    assert STDC_SPACE.config.ds_choices[len(PLAIN.config.ds_choices):] == [("stdc", 1), ("stdc", 2)]
    arch = next(a for a in (STDC_SPACE.sample(random.Random(i), num_classes=4) for i in range(20))
                if any(b.get("op") == "stdc" for st in a.genotype["stages"] for b in st))
    with torch.no_grad():
        assert PLAIN.build(arch).eval()(torch.randn(1, 3, 32, 64)).shape == (1, 4, 32, 64)
    with pytest.raises(RtsegError, match="is an STDC layer, which this space leaves out .*stdc=false.*; search it in the default ssr space"):
        PLAIN.supernet(4).choices_of(arch)
    # the plain space draws as it always did: no STDC layer in a thousand samples
    rng = random.Random(0)
    assert not any(b.get("op") for _ in range(1000) for st in PLAIN.sample(rng).genotype["stages"] for b in st)
    sigs = {s.key for s in STDC_SPACE.candidate_signatures(128, 256, 10)} - {s.key for s in PLAIN.candidate_signatures(128, 256, 10)}
    assert len(sigs) == 4 and all('"stdc_block"' in k for k in sigs)  # two stages x two resolutions


@pytest.mark.parametrize("options,match", [({"stdc": 1}, "write stdc=true or stdc=false"),
                                           ({"width": 96}, "space 'ssr' takes only --space-opt stdc=true|false")])
def test_ssr_space_options_are_checked(options, match):
    with pytest.raises(RtsegError, match=match):
        get_space("ssr", options)


def test_the_uniform_stdc_nets_are_as_deep_as_the_budget_allows():
    from rtseg.flops import sum_op_flops

    def flops(a):
        return sum_op_flops(STDC_SPACE.signatures(a, 128, 256)) / 1e9

    assert PLAIN.layer_kind_references(flops, 1e9, 10) == []
    high = flops(load_arch("baseline1").with_(num_classes=10)) / 3
    (full, n1), (half, n2) = STDC_SPACE.layer_kind_references(flops, high, 10)
    assert (n1, n2) == ("reference-stdc-s1", "reference-stdc-s2")
    for arch, spatial in ((full, 1), (half, 2)):
        STDC_SPACE.validate(arch)
        assert {json.dumps(b) for st in arch.genotype["stages"] for b in st} == {json.dumps({"op": "stdc", "spatial": spatial})}
        assert flops(arch) <= high
        # one layer more in either stage passes the budget (or the stage is at its deepest)
        for si, st in enumerate(STDC_SPACE.config.stages):
            blocks = arch.genotype["stages"][si]
            if len(blocks) < st.fixed + st.max_extra:
                deeper = arch.to_dict()
                deeper["genotype"]["stages"][si].append(dict(blocks[0]))
                assert flops(load_arch(deeper)) > high
    # nothing fits: the shallowest net, for the search to move into its band
    (low_full, _), _ = STDC_SPACE.layer_kind_references(flops, 0.0, 10)
    assert [len(st) for st in low_full.genotype["stages"]] == [st.fixed + 1 for st in STDC_SPACE.config.stages]
