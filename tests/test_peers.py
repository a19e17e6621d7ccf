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


def test_ddrnet_is_ddrnet23_slim_in_registered_ops():
    model = rtseg.build_model("ddrnet")
    # DDRNet-23-slim has 5.7 M parameters (Hong et al. 2021), its auxiliary training head left out
    assert abs(count_params(model) - 5.7e6) / 5.7e6 < 0.01
    arch = rtseg.load_arch("ddrnet")
    sigs = PEER.signatures(arch, 128, 256)
    by_type = {t: [s for s in sigs if s.type == t] for t in {s.type for s in sigs}}
    assert len(by_type["bilateral_fusion"]) == 2 and [s.spec.hparams["down"] for s in by_type["bilateral_fusion"]] == [2, 4]
    assert {(s.h, s.w) for s in by_type["bilateral_fusion"]} == {(16, 32)}  # the high branch stays at 1/8
    dappm = by_type["dappm"][0]
    assert (dappm.spec.c_in, dappm.spec.hparams["c_low"], dappm.spec.hparams["branch"]) == (128, 512, 128)
    assert len(by_type["res_basic"]) == 2 + 2 + 2 * 2 + 2 * 2 and len(by_type["res_bottleneck"]) == 2
    # width 2 is DDRNet-23 (base width 64, DAPPM branches still 128)
    wide = get_space("peer").signatures(rtseg.load_arch("ddrnet").with_(genotype={"model": "ddrnet", "width": 2.0}), 128, 256)
    assert next(s for s in wide if s.type == "dappm").spec.hparams["branch"] == 128
    assert wide[0].spec.c_out == 64


def test_stdc_is_stdc1_seg_in_registered_ops():
    arch = rtseg.load_arch("stdc")
    sigs = PEER.signatures(arch, 128, 256)
    modules = [s for s in sigs if s.type == "stdc_module"]
    assert [(s.spec.c_out, s.spec.stride) for s in modules] == [(256, 2), (256, 1), (512, 2), (512, 1), (1024, 2), (1024, 1)]
    head = next(s for s in sigs if s.type == "stdc_head")
    assert (head.h, head.w, head.spec.c_in, head.spec.hparams["inter"]) == (16, 32, 256, 128)  # FFM on the 1/8 detail feature
    model = rtseg.build_model(arch, num_classes=5).eval()
    block = next(m for m in model.modules() if isinstance(m, Op) and m.spec.type == "stdc_module")
    # the STDC module's blocks halve their widths and are concatenated back to C_out (sec. 3.1)
    assert [b[0].out_channels for b in [block.first, *block.blocks]] == [128, 64, 32, 32]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 72)).shape == (1, 5, 40, 72)  # sizes that do not halve evenly
        assert rtseg.build_model("ddrnet", num_classes=5).eval()(torch.randn(1, 3, 40, 72)).shape == (1, 5, 40, 72)


def test_profile_ops_measures_every_operator_of_every_peer(tmp_path):
    """The peer space has no searchable layer, so no skeleton: its LUT is the operator entries, complete
    once every published peer's operators are measured, and a peer's prediction is their sum."""
    from rtseg.latency.lut import load_lut
    from rtseg.latency.profile import profile_ops

    path = profile_ops("peer", 16, 32, "torch", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1, num_classes=5,
                       out_path=tmp_path / "lut.json", progress=False, threads=1, recheck=False, speed_reference=False)
    lut = load_lut(path)
    assert lut.complete and not lut.skeletons and lut.constant_ms == 0.0
    for name in ("erfnet", "lraspp_mbv3", "stdc", "ddrnet"):
        arch = rtseg.load_arch(name).with_(num_classes=5)
        sigs = PEER.signatures(arch, 16, 32)
        assert all(lut.has(s) for s in sigs), name
        assert lut.predict(arch, 16, 32).total_ms == pytest.approx(sum(lut.cost(s) for s in sigs))
