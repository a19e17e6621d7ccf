import json
import random

import numpy as np
import pytest
import torch

import rtseg
from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.ops import OpSpec, build_op
from rtseg.spaces import get_space, load_arch
from rtseg.spaces.cas import CASSpace
from rtseg.spaces.cas_cells import BACKBONE_PRIMITIVES, MS_PRIMITIVES, CASConfig, edge_name, primitive_spec
from tests.conftest import randomize_bn

SPACE = get_space("cas")
#: A small config for the supernet-behaviour tests (the behaviour does not depend on the size).
SMALL = CASSpace(CASConfig(stem=(8, 8, 8), width=4, layout="NRNR", nodes=2, ms_nodes=2, ms_width=8, ms_from=0))
def COST(s):
    """Any deterministic per-signature cost that tells the candidates apart."""
    return float(s.spec.c_out + s.h + sum(v for _, v in s.spec.params if isinstance(v, int)))


def test_supernet_trains_and_separates_arch_and_weight_params():
    sn = SMALL.supernet(4)
    arch_ids = {id(p) for p in sn.arch_parameters()}
    assert arch_ids and not arch_ids & {id(p) for p in sn.weight_parameters()}
    assert {d.level for d in sn.decisions()} == {"normal", "reduce", "ms"}
    assert all(d.choices[0] == "none" for d in sn.decisions())
    sn(torch.randn(2, 3, 64, 64)).logsumexp(1).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sn.arch_parameters())
    assert sn.regularization() == {}


def test_candidate_signatures_refuse_a_head_the_space_lacks():
    with pytest.raises(RtsegError, match="head 'aggregation' is not available"):
        SPACE.candidate_signatures(64, 128, 19, heads=("aggregation",))


def test_expected_cost_charges_nothing_for_none():
    sn = SPACE.supernet(19)
    # relaxed: differentiable, and "none" costs nothing, so more weight on none lowers the cost
    e = sn.expected_cost(COST, 128, 256)
    e.backward()
    g = sn.alphas[edge_name("normal", 0, 0).replace(".", "__")].grad
    assert g is not None and g[0] < 0 < g[1:].abs().sum()


def test_decoding_keeps_strongest_op_and_two_strongest_edges():
    sn = SPACE.supernet(19)
    with torch.no_grad():
        for d in sn.decisions():
            d.alpha.zero_()
        # node 1 of the normal cell: none dominates edge 0 but is never chosen; edge 2 is the strongest
        sn.alphas["normal__node1__in0"][0] = 9.0
        sn.alphas["normal__node1__in0"][BACKBONE_PRIMITIVES.index("identity") + 1] = 1.0
        sn.alphas["normal__node1__in2"][BACKBONE_PRIMITIVES.index("sep_conv_3x3_x4") + 1] = 5.0
        sn.alphas["normal__node1__in1"][BACKBONE_PRIMITIVES.index("max_pool_3x3") + 1] = 3.0
    row = sn.decode().genotype["normal"][1]
    assert row == [["max_pool_3x3", 1], ["sep_conv_3x3_x4", 2]]


def test_remove_frees_the_weights_of_every_cell_of_the_kind():
    sn = SPACE.supernet(19)
    name = edge_name("ms", 0, 0)
    k = MS_PRIMITIVES.index("conv_25x1_1x25") + 1
    n_before = sum(p.numel() for p in sn.weight_parameters())
    sn.remove(name, k)
    assert float(sn.probs(name).detach()[k]) == 0.0 and sum(p.numel() for p in sn.weight_parameters()) < n_before
    small = SMALL.supernet(4)
    small.remove(edge_name("reduce", 1, 2), 3)
    small(torch.randn(1, 3, 64, 64))


def test_config_is_rebuilt_from_json_alone():
    cfg = CASConfig(stem=(8, 8, 16), width=4, layout="NRNRN", nodes=2, ms_nodes=2, ms_width=8, ms_from=0)
    arch = CASSpace(cfg).sample(random.Random(0), num_classes=3)
    d = json.loads(arch.to_json())
    model = rtseg.build_model(d).eval()
    assert len(model.cells) == 5
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert SPACE.signatures(Arch.from_dict(d), 64, 64) == CASSpace(cfg).signatures(arch, 64, 64)


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    arch = SPACE.sample(random.Random(2), num_classes=5)
    arch.genotype["ms"][0] = [["rspp_24", 0], ["conv_25x1_1x25", 1]]  # pooling window larger than the map
    arch.genotype["reduce"][0] = [["pooled_conv_x2", 0], ["identity", 1]]
    model = rtseg.build_model(arch)
    randomize_bn(model, 2)
    model.eval()
    x = torch.randn(1, 3, 64, 128)
    path = tmp_path / "cas.onnx"
    torch.onnx.export(model, x, str(path), dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda g: g["normal"][0].__setitem__(0, ["conv_3x3_d2", 0]), r"'conv_3x3_d2' is not a normal operation"),
        (lambda g: g["ms"][1].__setitem__(1, ["none", 2]), r"'none' is not a ms operation"),
        (lambda g: g["reduce"][0].__setitem__(1, ["identity", 2]), r"input 2 is out of range; node 0 takes inputs 0..1"),
        (lambda g: g["normal"][2].__setitem__(1, list(g["normal"][2][0])), r"is used twice"),
        (lambda g: g["normal"].pop(), r"must list 3 nodes"),
        (lambda g: g.pop("ms"), r"genotype.ms is missing"),
        (lambda g: g["config"].update(layout="NRRRN"), r"at most two R"),
        (lambda g: g["config"].update(width=5), r"width must be even"),
        (lambda g: g["config"].update(depth=3), r"unknown fields: depth"),
        (lambda g: g.update(cells=[]), r"genotype has unknown fields: cells"),
    ],
)
def test_invalid_archs_are_clear_errors(mutate, match):
    d = load_arch("cas_ref").to_dict()
    mutate(d["genotype"])
    with pytest.raises(RtsegError, match=match):
        load_arch(d)


def test_operators_keep_or_halve_resolution():
    x = torch.randn(2, 8, 16, 32)
    for name in BACKBONE_PRIMITIVES:
        for stride in (1, 2):
            op = build_op(primitive_spec(name, 8, stride))
            assert op(x).shape == (2, 8, 16 // stride, 32 // stride), (name, stride)
    for name in MS_PRIMITIVES:
        assert build_op(primitive_spec(name, 8, 1))(x).shape == x.shape
    with pytest.raises(RtsegError, match="cannot build operator 'rspp'"):
        build_op(OpSpec.make("rspp", 8, 8, 2, window=8))


def test_cli_sample_and_show(cli, tmp_path):
    out = tmp_path / "cas.json"
    r = cli("arch", "sample", "--space", "cas", "--seed", "3", "--classes", "6", "--out", out)
    assert r.exit_code == 0, r.output
    r = cli("arch", "show", out, "--input", "64x128", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["space"] == "cas" and d["flops"] > 0 and d["ops"][0]["type"] == "conv_bn_relu"
    r = cli("arch", "show", "cas_ref", "--input", "100x200")
    assert r.exit_code == 2 and "multiple of 32" in r.output
