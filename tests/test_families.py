"""Hand-designed families scaled to a budget: LR-ASPP MobileNetV3 as torchvision lays it out, scaled
ERFNet and baseline1, members that build, count and export, and the picker that lands near T."""

import json

import numpy as np
import pytest
import torch

import rtseg
from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.backends.onnx_export import export_onnx
from rtseg.flops import count_flops, count_params, sum_op_flops
from rtseg.ops import Op
from rtseg.backends.ort_session import make_session
from rtseg.spaces import get_space, load_arch
from rtseg.backends.measure import LatencyMeasure
from rtseg.spaces.families import FAMILIES, get_family, pick_nearest

from conftest import randomize_bn

HW = (64, 128)


def macs(arch: Arch, hw=HW) -> int:
    return sum_op_flops(get_space(arch.space).signatures(arch, *hw))


def test_lraspp_mbv3_is_torchvisions_layout_in_registered_ops():
    model = rtseg.build_model("lraspp_mbv3", num_classes=21)
    # torchvision's lraspp_mobilenet_v3_large(num_classes=21) has 3,221,538 parameters
    assert count_params(model) == 3_221_538
    assert all(isinstance(m, Op) for m in [*model.backbone, model.head, model.upsample])
    arch = rtseg.load_arch("lraspp_mbv3").with_(num_classes=21)
    sigs = get_space("peer").signatures(arch, *HW)
    assert sum_op_flops(sigs) == count_flops(model, *HW)  # per-operator counts add up to the network
    head = next(s for s in sigs if s.type == "lraspp")
    assert (head.spec.c_in, head.spec.hparams["c_high"], head.spec.hparams["inter"]) == (40, 960, 128)
    assert (head.h, head.w) == (HW[0] // 8, HW[1] // 8)  # low-level feature at 1/8, deep one at 1/16
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, *HW)).shape == (1, 21, *HW)


def test_output_stride_8_dilates_instead_of_striding():
    arch = Arch("peer", 5, {"model": "lraspp_mbv3", "output_stride": 8})
    sigs = get_space("peer").signatures(arch, *HW)
    blocks = [s for s in sigs if s.type == "mbv3_block"]
    assert min(s.h for s in blocks) == HW[0] // 8
    assert {s.spec.hparams["dilation"] for s in blocks} == {1, 2, 4}
    assert next(s for s in sigs if s.type == "lraspp").spec.hparams["high_scale"] == 1
    assert macs(arch) > macs(Arch("peer", 5, {"model": "lraspp_mbv3"}))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_members_build_and_cost_grows_with_each_knob(name):
    fam = get_family(name)
    for knob in fam.knobs:
        grid = list(knob.grid)  # smallest net first
        values = [grid[0], grid[len(grid) // 2], grid[-1]]
        archs = [fam.arch(5, **{knob.name: v}) for v in values]
        costs = [macs(a) for a in archs]
        assert costs == sorted(costs) and costs[0] < costs[-1], (knob.name, values, costs)
    small = fam.arch(5, **{k.name: k.grid[0] for k in fam.knobs if not (name == "baseline1" and k.name == "half_res")})
    with torch.no_grad():
        assert rtseg.build_model(small).eval()(torch.randn(1, 3, *HW)).shape == (1, 5, *HW)


def test_unscaled_member_is_the_published_net():
    for name, builtin in (("erfnet", "erfnet"), ("lraspp_mbv3", "lraspp_mbv3"), ("baseline1", "baseline1"), ("stdc", "stdc"),
                          ("ddrnet", "ddrnet")):
        fam = get_family(name)
        assert fam.arch(19).name == name
        assert macs(fam.arch(19)) == macs(rtseg.load_arch(builtin)), name


def test_members_are_distinct_and_ordered_and_the_path_is_monotone():
    for name in ("baseline1", "erfnet"):
        members = get_family(name).members(HW, 5)
        assert len({m.ops for m in members}) == len(members) > 10
        assert [m.flops for m in members] == sorted(m.flops for m in members)
    for name in ("stdc", "ddrnet"):  # every fourth member along the width path (each counts ~20 operators)
        members = get_family(name).members(HW, 5)
        assert len({m.ops for m in members}) == len(members) > 10
        assert [m.flops for m in members[::4]] == sorted(m.flops for m in members[::4])
    erf = get_family("erfnet").members(HW, 5)
    for a, b in zip(erf, erf[1:]):  # compound scaling: width and depth never shrink together along the path
        assert b.knobs["width"] >= a.knobs["width"] and b.knobs["depth"] >= a.knobs["depth"]
    assert erf[-1].arch.name == "erfnet"
    base = get_family("baseline1").members(HW, 5)
    assert base[0].knobs == {"depth": -2, "narrow": 32, "half_res": 6}  # resolution continues below the space's floor
    assert base[-1].knobs == {"depth": 2, "narrow": 0, "half_res": 0}


def test_member_json_round_trip(tmp_path):
    fam = get_family("lraspp_mbv3")
    arch = fam.arch(7, width=0.75, depth=0.5)
    path = arch.save(tmp_path / "m.json")
    back = rtseg.load_arch(path)
    assert back.to_dict() == arch.to_dict()
    assert back.meta["family"] == {"name": "lraspp_mbv3", "knobs": {"width": 0.75, "depth": 0.5}, "source": fam.source}
    a, b = rtseg.build_model(arch), rtseg.build_model(back)
    assert list(a.state_dict()) == list(b.state_dict())
    base = get_family("baseline1").arch(7, depth=-1, narrow=8, half_res=2)
    back = rtseg.load_arch(json.loads(base.to_json()))
    assert back.space == "ssr" and [len(s) for s in back.genotype["stages"]] == [4, 7]
    assert [b["spatial"] for b in back.genotype["stages"][1]] == [1] * 5 + [2] * 2


def test_bad_knobs_and_genotypes_are_clear_errors():
    with pytest.raises(RtsegError, match="no knob wdth"):
        get_family("erfnet").arch(5, wdth=0.5)
    with pytest.raises(RtsegError, match="width = 5.0 is out of range"):
        get_family("erfnet").arch(5, width=5.0)
    with pytest.raises(RtsegError, match="narrow = 5 is not one of 0, 4"):
        get_family("baseline1").arch(5, narrow=5)
    with pytest.raises(RtsegError, match="depth = -1.5 is not one of"):
        get_family("baseline1").arch(5, depth=-1.5)
    with pytest.raises(RtsegError, match="unknown family"):
        get_family("enet")
    with pytest.raises(RtsegError, match="output_stride"):
        load_arch(Arch("peer", 5, {"model": "lraspp_mbv3", "output_stride": 32}).to_dict())
    with pytest.raises(RtsegError, match="unknown fields: output_stride"):
        load_arch(Arch("peer", 5, {"model": "erfnet", "output_stride": 8}).to_dict())


@pytest.mark.parametrize("arch", [
    get_family("baseline1").arch(4, depth=-1, narrow=12, half_res=3),
    get_family("erfnet").arch(4, width=0.5, depth=0.5),
    get_family("lraspp_mbv3").arch(4, width=0.5, depth=0.6),
    get_family("lraspp_mbv3_os8").arch(4, width=0.375),
    get_family("stdc").arch(4, width=0.5, depth=1.5),
    get_family("ddrnet").arch(4, width=0.5, depth=0.5),
], ids=lambda a: a.name)
def test_one_member_of_each_family_exports_with_onnxruntime_parity(arch, tmp_path):
    model = rtseg.build_model(arch).eval()
    randomize_bn(model)
    x = torch.randn(1, 3, 32, 64)
    with torch.no_grad():
        ref = model(x).numpy()
    sess = make_session(export_onnx(model, (x,), tmp_path / "m.onnx"), threads=1)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == ref.shape == (1, 4, 32, 64)
    assert np.abs(got - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).mean() > 0.999


def flops_ms(arch: Arch) -> float:
    """A deterministic stand-in for a device: 1 ms per 10 M multiply-adds at 64x128."""
    return macs(arch) / 1e7


@pytest.mark.parametrize("name", ["baseline1", "erfnet", "lraspp_mbv3", "stdc", "ddrnet"])
@pytest.mark.parametrize("share", [0.4, 0.7])
def test_pick_nearest_lands_within_5pct_of_the_budget(name, share):
    target = share * flops_ms(rtseg.load_arch("baseline1"))
    seen = []
    pick = pick_nearest(name, target, flops_ms, input_hw=HW, num_classes=19, on_measure=lambda m, ms: seen.append(ms))
    assert pick.within_tol and abs(pick.measured_ms / target - 1) <= 0.05
    assert pick.measured_ms == flops_ms(pick.member.arch)
    assert len(seen) <= 14  # a bisection, not a sweep of the family
    rec = pick.arch().meta["latency"]
    assert rec["measured_ms"] == pick.measured_ms and rec["target_ms"] == target
    measured = [t["measured_ms"] for t in pick.tried]
    assert min(abs(m - target) for m in measured) == abs(pick.measured_ms - target)


def test_pick_nearest_holds_fixed_knobs_and_reports_an_unreachable_budget():
    pick = pick_nearest("erfnet", 5.0, flops_ms, input_hw=HW, fixed={"depth": 1.0})
    assert all(t["knobs"]["depth"] == 1.0 for t in pick.tried)
    tiny = pick_nearest("baseline1", 0.01, flops_ms, input_hw=HW)
    assert not tiny.within_tol and tiny.member.knobs == {"depth": -2, "narrow": 32, "half_res": 6}
    with pytest.raises(RtsegError, match="positive"):
        pick_nearest("baseline1", 0, flops_ms, input_hw=HW)


def test_latency_measure_times_the_onnx_export_on_one_thread():
    m = LatencyMeasure((32, 64), warmup=2, repeats=5)
    small, big = get_family("baseline1").arch(5, depth=-2, narrow=32, half_res=6), rtseg.load_arch("baseline1")
    assert 0 < m(small)
    assert m.record["backend"] == "onnxruntime" and m.record["threads"] == 1 and m.record["input"] == "32x64"
    assert len(m.many([small, big], rounds=2, repeats=4)) == 2


@pytest.mark.slow
def test_pick_nearest_with_real_onnxruntime_timings():
    measure = LatencyMeasure((32, 64), warmup=3, repeats=15)
    fam = {"depth": -2, "half_res": 0}  # nine widths: a short real run
    lo, hi = (measure(get_family("baseline1").arch(5, narrow=n, **fam)) for n in (32, 0))
    pick = pick_nearest("baseline1", (lo + hi) / 2, measure, input_hw=(32, 64), num_classes=5, fixed=fam)
    assert pick.measure["backend"] == "onnxruntime" and pick.measured_ms > 0
    # the family's ends are measured only when the bisection reaches them, which real (noisy) timings decide
    assert pick.member.knobs["depth"] == -2 and (pick.range_ms is None or min(pick.range_ms) > 0)
    assert min(abs(t["measured_ms"] - pick.target_ms) for t in pick.tried) == abs(pick.measured_ms - pick.target_ms)


def test_cli_families_and_scale_to_given_knobs(cli, tmp_path):
    r = cli("arch", "families", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [f["family"] for f in d["families"]] == list(FAMILIES) and all(f["members"] > 10 for f in d["families"])
    out = tmp_path / "e.json"
    r = cli("arch", "scale", "erfnet", "--fix", "width=0.5", "--fix", "depth=0.5", "--classes", "5", "--out", out)
    assert r.exit_code == 0, r.output
    r = cli("arch", "show", out, "--input", "64x128", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["flops"] == macs(get_family("erfnet").arch(5, width=0.5, depth=0.5))
    for bad, msg in ((["enet"], "unknown family"), (["erfnet", "--fix", "width"], "NAME=VALUE"),
                     (["erfnet", "--fix", "width=9"], "out of range"), (["erfnet", "--latency-ms", "-1"], "greater than 0")):
        r = cli("arch", "scale", *bad)
        assert r.exit_code == 2 and "error:" in r.output and "Traceback" not in r.output, r.output
        assert msg in r.output


@pytest.mark.slow
def test_cli_scale_measures_on_onnxruntime(cli, tmp_path):
    out = tmp_path / "b.json"
    r = cli("arch", "scale", "baseline1", "--latency-ms", "1.0", "--input", "32x64", "--classes", "5",
            "--fix", "depth=-2", "--fix", "half_res=0", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["measure"]["backend"] == "onnxruntime" and rec["measure"]["threads"] == 1
    assert rtseg.load_arch(out).meta["latency"]["measured_ms"] == rec["measured_ms"]


@pytest.mark.parametrize("name", ["stdc", "ddrnet"])
def test_cli_scale_fits_the_modern_families_to_a_budget(cli, tmp_path, monkeypatch, name):
    """``rtseg arch scale NAME --latency-ms T`` end to end, the device replaced by the multiply-add stand-in."""
    monkeypatch.setattr(LatencyMeasure, "__call__", lambda self, arch: flops_ms(arch))
    monkeypatch.setattr(LatencyMeasure, "many", lambda self, archs, rounds=10, repeats=100: [flops_ms(a) for a in archs])
    target = 0.5 * flops_ms(rtseg.load_arch("baseline1"))
    out = tmp_path / f"{name}.json"
    r = cli("arch", "scale", name, "--latency-ms", target, "--input", "64x128", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout[r.stdout.index("{"):])
    assert rec["family"] == name and rec["within_tol"] and abs(rec["measured_ms"] / target - 1) <= 0.05
    arch = rtseg.load_arch(out)
    assert arch.genotype["model"] == name and flops_ms(arch) == rec["measured_ms"]
