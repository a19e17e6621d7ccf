"""LUTs measured for real on a tiny subset: schema, the prediction identity, resume, refusals, validation."""

from __future__ import annotations

import json
import random
import zlib
from pathlib import Path

import pytest

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.backends.device import device_slug
from rtseg.latency.lut import LUT, load_lut
from rtseg.latency.profile import profile_ops
from rtseg.backends.timing import TimingStats
from rtseg.latency.validate import measure_arch_latency, validate_lut
from rtseg.ops import OpSignature
from rtseg.spaces import get_space

H, W = 64, 128
FAST = dict(warmup=1, repeats=3, min_time_s=0.0, max_entry_s=0.05, threads=1, progress=False)


def two_archs() -> list[Arch]:
    sp = get_space("ssr")
    rng = random.Random(3)
    return [sp.sample(rng, head="classifier"), sp.sample(rng, head="aggregation")]


def arch_signatures(archs: list[Arch]) -> list[OpSignature]:
    sp = get_space("ssr")
    return [s for a in archs for s in sp.signatures(a, H, W)]


@pytest.fixture(scope="module")
def small_lut(tmp_path_factory) -> LUT:
    """The operators of two archs (both heads) at 64x128, measured with the torch backend."""
    out = tmp_path_factory.mktemp("lut") / "small.json"
    profile_ops("ssr", H, W, method="isolated", out_path=out, signatures=arch_signatures(two_archs()), **FAST)
    return load_lut(out)


def test_lut_file_has_schema_and_provenance(small_lut):
    doc = json.loads(small_lut.path.read_text())
    assert doc["format"] == "rtseg.lut" and doc["schema_version"] == 1
    prov = small_lut.provenance
    for key in ("device", "backend", "backend_version", "precision", "batch", "input", "warmup", "repeats", "method",
                "created", "updated", "rtseg_version", "threads", "profiling_s"):
        assert key in prov, key
    assert prov["device"]["kind"] == "cpu" and prov["device"]["name"] and prov["device"]["threads"] == 1
    assert (small_lut.backend, small_lut.precision, small_lut.batch, small_lut.input_hw) == ("torch", "fp32", 1, (H, W))
    assert small_lut.space == "ssr" and small_lut.num_classes == 19 and small_lut.heads == ["classifier", "aggregation"]
    assert not doc["complete"]  # a subset of the space
    for e in small_lut.entries.values():
        assert e["p10_ms"] <= e["median_ms"] <= e["p90_ms"] and e["n"] >= 3 and e["method"] == "isolated"
    assert set(small_lut.skeletons) == {"classifier", "aggregation"} and small_lut.has_skeleton
    probe = small_lut.summary()["probe"]  # the reference operator, timed at the start and the end at least
    assert probe["n"] >= 2 and 0 < probe["min_ms"] <= probe["max_ms"] and probe["op"].startswith("nb1d")


def test_prediction_is_sum_of_costs_plus_constant(small_lut):
    sp = get_space("ssr")
    for a in two_archs():
        pred = small_lut.predict(a)
        sigs = sp.signatures(a, H, W)
        assert pred.total_ms == pytest.approx(sum(small_lut.cost(s) for s in sigs) + small_lut.constant_ms, rel=1e-12)
        assert [s for s, _ in pred.per_op] == sigs and pred.total_ms > 0
        assert small_lut.pricer().price(a, H, W).latency_ms == pytest.approx(pred.total_ms, rel=1e-12)  # the search's pricing
    # the constant is the measured skeleton minus its own operators' entries (nothing fitted), each
    # brought to the run's typical speed by the reference operator timed beside it
    base = small_lut.speed_base_ms
    at_base = lambda e: e["median_ms"] * base / e["ref_ms"]  # noqa: E731
    sk = small_lut.skeletons["classifier"]
    assert small_lut.constant_ms == pytest.approx(at_base(sk) - sum(at_base(small_lut.entries[k]) for k in sk["fixed"]))


def test_missing_operator_and_mismatched_arch_are_refused(small_lut):
    a = two_archs()[0]
    other = get_space("ssr").sample(random.Random(99))
    with pytest.raises(RtsegError, match="does not cover operator .* re-run rtseg profile-ops"):
        small_lut.predict(other)
    with pytest.raises(RtsegError, match="measured at 64x128"):
        small_lut.predict(a, 128, 256)
    with pytest.raises(RtsegError, match="19 classes"):
        small_lut.predict(a.with_(num_classes=7))
    # force skips the provenance checks; an operator the LUT lacks still fails clearly
    with pytest.raises(RtsegError, match="does not cover"):
        small_lut.predict(a.with_(num_classes=7), force=True)


def test_check_device_refuses_another_device(small_lut):
    assert small_lut.check_device() == [] or all("torch" in n for n in small_lut.check_device())
    with pytest.raises(RtsegError, match="onnxruntime"):
        small_lut.check_device(backend="onnxruntime")
    doc = json.loads(small_lut.path.read_text())
    doc["provenance"]["device"]["name"] = "Some Other CPU 9000"
    other = LUT(doc)
    with pytest.raises(RtsegError, match="Some Other CPU 9000.*pass --force"):
        other.check_device()
    assert any("forced past" in n for n in other.check_device(force=True))


def test_supernet_expected_cost_matches_prediction_when_one_hot():
    """The search's E[latency] (SSRSupernet.expected_cost + constant_ms) equals LUT.predict for a one-hot
    supernet: checked on a LUT document covering the whole space with synthetic numbers."""
    sp = get_space("ssr")
    sigs = sp.candidate_signatures(H, W, 19, heads=("classifier",))
    entries = {s.key: {"median_ms": 0.01 + (zlib.crc32(s.key.encode()) % 997) / 1000.0, "p10_ms": 0.0, "p90_ms": 9.0, "n": 1} for s in sigs}
    fixed = [s.key for s in sp.fixed_signatures(H, W, 19, "classifier")]
    doc = {"format": "rtseg.lut", "schema_version": 1, "space": "ssr", "num_classes": 19, "heads": ["classifier"], "space_options": {},
           "provenance": {"device": {"kind": "cpu", "name": "x"}, "backend": "torch", "precision": "fp32", "batch": 1,
                          "input": [H, W], "method": "isolated"},
           "entries": entries, "skeletons": {"classifier": {"median_ms": 5.0, "p10_ms": 5, "p90_ms": 5, "n": 1, "fixed": fixed}}}
    lut = LUT(doc)
    assert lut.constant_ms == pytest.approx(5.0 - sum(entries[k]["median_ms"] for k in fixed))
    for seed in range(3):
        a = sp.sample(random.Random(seed))
        net = sp.supernet(19)
        net.fix(a)
        e = float(net.expected_cost(lut.cost, H, W).detach()) + lut.constant_ms
        assert e == pytest.approx(lut.predict(a).total_ms, rel=1e-5)
        assert float(lut.pricer().expected_latency(net, H, W).detach()) == pytest.approx(e, rel=1e-6)


def test_resume_after_interruption_measures_only_missing(tmp_path):
    sigs = arch_signatures(two_archs()[:1])
    out = tmp_path / "r.json"
    seen: list[str] = []

    class Boom(Exception):
        pass

    def stop_after_4(i, sig, entry):
        seen.append(sig.key)
        if len(seen) == 4:
            raise Boom()

    with pytest.raises(Boom):
        profile_ops("ssr", H, W, out_path=out, signatures=sigs, heads=["classifier"], on_entry=stop_after_4, recheck=False, **FAST)
    first = load_lut(out)  # flushed on the way out, atomically
    assert len(first.entries) == 4 and not first.skeletons
    again: list[str] = []
    profile_ops("ssr", H, W, out_path=out, signatures=sigs, heads=["classifier"], on_entry=lambda i, s, e: again.append(s.key), recheck=False, **FAST)
    done = load_lut(out)
    assert not set(again) & set(seen)  # nothing measured twice
    assert set(done.entries) == {s.key for s in sigs}
    for k in seen:
        assert done.entries[k] == first.entries[k]
    assert done.provenance["runs"] == 2 and done.has_skeleton
    # a finished LUT re-run measures nothing
    third: list[str] = []
    profile_ops("ssr", H, W, out_path=out, signatures=sigs, heads=["classifier"], on_entry=lambda i, s, e: third.append(s.key), recheck=False, **FAST)
    assert third == []


def test_mismatched_provenance_is_refused_unless_force(tmp_path):
    sigs = arch_signatures(two_archs()[:1])[:2]
    out = tmp_path / "m.json"
    kw = dict(FAST, heads=["classifier"], signatures=sigs, out_path=out, method="isolated")
    profile_ops("ssr", H, W, **kw)
    with pytest.raises(RtsegError, match="other settings .*method.*--force"):
        profile_ops("ssr", H, W, **dict(kw, method="network"))
    with pytest.raises(RtsegError, match="other settings"):
        profile_ops("ssr", H, W, **dict(kw, threads=2))
    profile_ops("ssr", H, W, **dict(kw, method="network", force=True))
    assert load_lut(out).method == "network" and load_lut(out).provenance["runs"] == 1


def test_malformed_luts_are_clear_errors(tmp_path):
    with pytest.raises(RtsegError, match="not found"):
        load_lut(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    with pytest.raises(RtsegError, match="not valid JSON"):
        load_lut(bad)
    bad.write_text(json.dumps({"format": "something"}))
    with pytest.raises(RtsegError, match="not an rtseg LUT"):
        load_lut(bad)
    bad.write_text(json.dumps({"format": "rtseg.lut", "schema_version": 99}))
    with pytest.raises(RtsegError, match="schema_version 99"):
        load_lut(bad)
    bad.write_text(json.dumps({"format": "rtseg.lut", "schema_version": 1, "space": "ssr", "num_classes": 19, "heads": ["classifier"],
                               "provenance": {"device": {}, "backend": "torch", "precision": "fp32", "batch": 1, "input": [64, 128],
                                              "method": "isolated"}, "entries": {"k": {"median_ms": "fast"}}}))
    with pytest.raises(RtsegError, match="numeric 'median_ms'"):
        load_lut(bad)
    # a corrupt file at --out is refused, and --force replaces it
    with pytest.raises(RtsegError, match="--force"):
        profile_ops("ssr", H, W, out_path=bad, signatures=arch_signatures(two_archs()[:1])[:1], heads=["classifier"], **FAST)


def test_network_method_and_onnxruntime_backend(tmp_path):
    sigs = arch_signatures(two_archs()[:1])
    out = profile_ops("ssr", H, W, backend="onnxruntime", method="network", stack=2, out_path=tmp_path / "n.json",
                      signatures=sigs, heads=["classifier"], **FAST)
    lut = load_lut(out)
    assert lut.backend == "onnxruntime" and lut.provenance["backend_settings"]["graph_optimization"] == "ORT_ENABLE_ALL"
    methods = {OpSignature.from_key(k).type: e["method"] for k, e in lut.entries.items()}
    assert methods["nb1d"] == "network" and methods["db"] == "isolated" and methods["classifier"] == "isolated"
    nb = next(e for k, e in lut.entries.items() if e["method"] == "network")
    assert nb["stack"] == 2 and nb["network_median_ms"] > nb["identity_ms"]
    assert lut.predict(two_archs()[0]).total_ms > 0


def test_validate_and_measure_arch_latency(small_lut, tmp_path):
    res = validate_lut(small_lut, archs=two_archs(), warmup=1, repeats=4, rounds=2, progress=False, plot=tmp_path / "v.png")
    assert res.samples == 2 and len(res.rows) == 2
    assert 0 <= res.mape and 0 <= res.within_10pct <= 1 and -1 <= res.kendall_tau <= 1
    for r in res.rows:
        assert r.n == 4 and r.measured_ms > 0 and r.error == pytest.approx((r.predicted_ms - r.measured_ms) / r.measured_ms)
    assert (tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    d = res.to_dict()
    assert {"mape", "within_10pct", "kendall_tau", "samples", "rows"} <= set(d)
    assert d["settings"]["probe_ratio"] > 0 and d["settings"]["threads"] == 1
    st = measure_arch_latency(two_archs()[0], H, W, backend="torch", device="cpu", precision="fp32", batch=1, warmup=1, repeats=3, threads=1)
    assert isinstance(st, TimingStats) and st.n == 3 and st.median_ms > 0


def test_default_output_path_names_device_space_backend_precision_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sigs = arch_signatures(two_archs()[:1])[:2]
    out = profile_ops("ssr", H, W, signatures=sigs, heads=["classifier"], **FAST)
    lut = load_lut(out)
    slug = lut.provenance["device"]["slug"]
    assert out == Path("engines") / slug / f"lut-ssr-torch-fp32-{H}x{W}-1t.json" and (tmp_path / out).exists()
    assert lut.method == "network" and slug == device_slug("cpu")  # the folder rtseg export writes to as well
    out2 = profile_ops("ssr", H, W, signatures=sigs, heads=["classifier"], method="isolated", batch=2, **FAST)
    assert out2.name == f"lut-ssr-torch-fp32-{H}x{W}-1t-b2-isolated.json" and load_lut(out2).batch == 2


@pytest.mark.slow
def test_int8_lut_on_onnxruntime_and_its_validation(tmp_path):
    """``profile-ops --precision int8``: each operator quantized in QDQ form around it, the LUT says
    int8, and ``lut validate`` measures whole INT8 nets against it."""
    sp, rng = get_space("ssr"), random.Random(5)
    archs = [sp.sample(rng, head="classifier") for _ in range(2)]
    out = profile_ops("ssr", H, W, backend="onnxruntime", precision="int8", out_path=tmp_path / "i8.json",
                      signatures=arch_signatures(archs), heads=["classifier"], **FAST)
    lut = load_lut(out)
    assert lut.precision == "int8" and "QDQ" in lut.provenance["backend_settings"]["quantization"]
    assert lut.predict(archs[0]).total_ms > 0
    res = validate_lut(lut, archs=archs, warmup=1, repeats=2, rounds=1, progress=False)
    assert res.samples == 2 and all(r.measured_ms > 0 for r in res.rows) and res.to_dict()["settings"]["precision"] == "int8"


def test_an_older_plain_ssr_lut_is_widened_to_the_default_space_by_a_resume(tmp_path):
    """LUTs written before STDC layers were the default record no options and priced NB-1D layers
    only; resuming one in the default space keeps its entries and measures only what STDC layers add."""
    plain = get_space("ssr", {"stdc": False})
    sigs = plain.signatures(plain.sample(random.Random(0), num_classes=19, head="classifier"), H, W)
    out = tmp_path / "older.json"
    profile_ops("ssr", H, W, out_path=out, signatures=sigs, heads=["classifier"], recheck=False, space_options={"stdc": False}, **FAST)
    doc = json.loads(out.read_text())
    assert doc["space_options"] == {"stdc": False}
    del doc["space_options"]  # as such LUTs were written
    out.write_text(json.dumps(doc))
    assert load_lut(out).space_options == {"stdc": False}
    stdc = [s for s in get_space("ssr").candidate_signatures(H, W, 19, heads=("classifier",)) if s.type == "stdc_block"]
    seen: list[str] = []
    profile_ops("ssr", H, W, out_path=out, signatures=[*sigs, *stdc], heads=["classifier"], recheck=False,
                on_entry=lambda i, s, e: seen.append(s.key), **FAST)
    lut = load_lut(out)
    assert sorted(seen) == sorted(s.key for s in stdc) and len(stdc) == 4
    assert lut.space_options == {} and lut.provenance["widened_from_options"] == {"stdc": False} and lut.provenance["runs"] == 2
    # the other way round takes choices away: refused, not resumed
    with pytest.raises(RtsegError, match="space_options"):
        profile_ops("ssr", H, W, out_path=out, signatures=sigs, heads=["classifier"], recheck=False, space_options={"stdc": False}, **FAST)
