"""The hand-designed peer space: ERFNet as published, built from registered operators, not searchable."""

import json
import random

import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.flops import count_flops, count_params, sum_op_flops
from rtseg.ops import Op
from rtseg.spaces import get_space

PEER = get_space("peer")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_erfnet_builds_from_builtin_name_with_published_size():
    model = rtseg.build_model("erfnet")
    # ERFNet has 2.06 M parameters with 19-20 classes (paper: "2.1M").
    assert abs(count_params(model) - 2.06e6) / 2.06e6 < 0.01
    assert rtseg.load_arch("erfnet").space == "peer"
    assert "erfnet" in rtseg.builtin_arch_names()


def test_erfnet_keeps_resolution_and_is_made_of_registered_ops():
    model = rtseg.build_model("erfnet", num_classes=7).eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 128))
    assert y.shape == (2, 7, 64, 128)
    ops = [m for m in model.layers]
    assert all(isinstance(m, Op) for m in ops)
    assert [m.spec.type for m in ops].count("erfnet_nb1d") == 5 + 8 + 2 + 2


def test_erfnet_op_flops_add_up_to_the_network():
    arch = rtseg.load_arch("erfnet")
    model = rtseg.build_model(arch)
    sigs = PEER.signatures(arch, 64, 128)
    assert sum_op_flops(sigs) == count_flops(model, 64, 128)
    cands = {s.key for s in PEER.candidate_signatures(64, 128)}
    assert {s.key for s in sigs} <= cands


def test_peer_space_is_not_searchable():
    with pytest.raises(RtsegError, match="not searchable"):
        PEER.sample(random.Random(0))
    with pytest.raises(RtsegError, match="not searchable"):
        PEER.supernet(19)


def test_unknown_peer_and_bad_size_are_clear_errors(tmp_path):
    bad = json.loads(json.dumps(rtseg.load_arch("erfnet").to_dict()))
    bad["genotype"]["model"] = "enet"
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(RtsegError, match="not a known peer"):
        rtseg.load_arch(p)
    with pytest.raises(RtsegError, match="multiple of 8"):
        PEER.signatures(rtseg.load_arch("erfnet"), 60, 128)


def test_arch_show_and_sample_through_the_cli(cli):
    r = cli("arch", "show", "erfnet", "--input", "64x128", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["space"] == "peer" and d["params"] > 2_000_000
    r = cli("arch", "sample", "--space", "peer")
    assert r.exit_code == 2
    assert "not searchable" in r.output
