"""The speed reference, run for real: every entry and end-to-end timing is taken beside a reference
operator, the LUT charges entries at the run's typical speed, and validation scales each prediction
sample by sample, by the speed the machine showed while it was taken (rtseg/latency/speed.py)."""

from __future__ import annotations

import json
import random

import pytest

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.backends.timers import make_timer
from rtseg.backends.device import detect_device
from rtseg.latency.lut import load_lut
from rtseg.latency.entries import at_run_speed
from rtseg.latency.profile import profile_ops
from rtseg.latency.speed import SpeedReference, base_speed, speed_factor
from rtseg.latency.validate import ArchTimings, choose_headline, validate_lut
from rtseg.spaces import get_space

H, W = 64, 128
FAST = dict(warmup=1, repeats=3, min_time_s=0.0, max_entry_s=0.05, threads=1, progress=False)


def one_arch() -> Arch:
    return get_space("ssr").sample(random.Random(7), num_classes=19, head="classifier")


@pytest.fixture(scope="module")
def speed_lut(tmp_path_factory):
    """The network-method entries of one ssr arch at 64x128, each timed beside the reference operator."""
    out = tmp_path_factory.mktemp("speed") / "lut.json"
    sigs = get_space("ssr").signatures(one_arch(), H, W)
    profile_ops("ssr", H, W, method="network", stack=2, out_path=out, signatures=sigs, heads=["classifier"], **FAST)
    return out


def test_every_timing_records_the_reference_beside_it(speed_lut):
    lut = load_lut(speed_lut)
    ref = lut.provenance["speed_reference"]
    assert ref["op"] == lut.probe_summary()["key"] and ref["block"] >= 1  # the probe operator is the reference
    refs = [e["ref_ms"] for e in lut.entries.values()]
    assert all(r > 0 for r in refs) and lut.skeletons["classifier"]["ref_ms"] > 0
    assert lut.speed_base_ms == pytest.approx(base_speed(refs))
    summary = lut.summary()["speed"]
    assert summary["entries"] == len(refs) and summary["min"] <= summary["p10"] <= 1.0 <= summary["p90"] <= summary["max"]


def test_an_entry_measured_on_a_slower_machine_is_charged_at_the_typical_speed(speed_lut, tmp_path):
    doc = json.loads(speed_lut.read_text())
    for e in doc["entries"].values():
        e["ref_ms"] = 1.0
    key = next(iter(doc["entries"]))
    measured = doc["entries"][key]["median_ms"]
    e = doc["entries"][key]
    slow = dict(doc, entries=dict(doc["entries"], **{key: dict(e, median_ms=2 * measured, p10_ms=2 * e["p10_ms"], p90_ms=2 * e["p90_ms"],
                                                               ref_ms=2.0)}))
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(slow))
    lut = load_lut(path)
    assert lut.speed_base_ms == 1.0  # the median of the references: one slow moment does not move it
    entry_cost = {k: lut._at_base(e) for k, e in lut.entries.items()}
    assert entry_cost[key] == pytest.approx(measured)  # twice the time while the reference also took twice as long
    del slow["entries"][key]["ref_ms"]  # an entry without a reference is charged as measured
    path.write_text(json.dumps(slow))
    assert load_lut(path)._at_base(load_lut(path).entries[key]) == pytest.approx(2 * measured)


@pytest.mark.parametrize("bad", [0, -1.0, "1.0", True])
def test_malformed_reference_time_is_refused(speed_lut, tmp_path, bad):
    doc = json.loads(speed_lut.read_text())
    key = next(iter(doc["entries"]))
    doc["entries"][key]["ref_ms"] = bad
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(RtsegError, match="'ref_ms' .* must be a positive number"):
        load_lut(path)


def test_speed_factor_and_base():
    assert speed_factor(2.0, 1.0) == 0.5 and speed_factor(None, 1.0) == 1.0 and speed_factor(1.0, None) == 1.0
    assert base_speed([]) is None and base_speed([1.0, 3.0, 2.0, 0.0]) == 2.0


def test_reference_brackets_a_measurement_on_a_real_timer():
    sig = get_space("ssr").signatures(one_arch(), H, W)[1]
    timer = make_timer("torch", detect_device("cpu", threads=1))
    ref = SpeedReference(timer, sig, block=2)
    try:
        value, ref_ms = ref.bracket(lambda: 42)
        assert value == 42 and ref_ms > 0 and len(ref.samples(5)) == 5
    finally:
        ref.close()
        ref.close()  # idempotent


def test_recheck_compares_two_looks_at_the_speed_each_ran():
    # the entry was measured while the reference took 2 ms, the quick look while it took 1 ms: the
    # machine, not the operator, was twice as fast, so the look must not replace the entry
    assert at_run_speed({"median_ms": 1.0, "ref_ms": 1.0}, {"median_ms": 2.0, "ref_ms": 2.0}) == (1.0, 1.0)
    assert at_run_speed({"median_ms": 1.0}, {"median_ms": 2.0, "ref_ms": 2.0}) == (1.0, 2.0)  # no pair: raw


def test_each_sample_is_brought_to_the_base_speed_by_the_reference_of_its_round():
    # one arch timed in two rounds, the second while the machine ran twice as slow (the reference
    # took 2 ms instead of 1): at the base speed every sample is 10 ms
    t = ArchTimings(samples=[[10.0, 10.0, 20.0, 20.0]], sample_refs=[[1.0, 1.0, 2.0, 2.0]])
    assert t.at_speed(1.0) == [[10.0, 10.0, 10.0, 10.0]] and t.medians_at(1.0) == [10.0]
    assert t.medians == [15.0] and t.ref_ms == [1.5]
    plain = ArchTimings(samples=[[10.0, 20.0]])  # no reference: nothing is scaled
    assert plain.medians_at(1.0) == [15.0] and plain.ref_ms == [None]


def test_round_agreement_splits_even_and_odd_rounds():
    # two archs, four rounds; the machine ran twice as slow in round 1 and the reference saw it
    samples = [[10.0, 20.0, 10.0, 10.0], [12.0, 24.0, 12.0, 12.0]]
    refs = [[1.0, 2.0, 1.0, 1.0], [1.0, 2.0, 1.0, 1.0]]
    t = ArchTimings(samples, refs, [[0, 1, 2, 3], [0, 1, 2, 3]])
    assert t.round_agreement(1.0)["spread"] == pytest.approx(0.0)  # corrected, the halves agree exactly
    raw = t.round_agreement(None)
    assert raw["spread"] > 0.1 and raw["tau"] == pytest.approx(1.0)
    assert choose_headline({"corrected": t.round_agreement(1.0), "raw": raw}) == "corrected"
    # a reference burst that the archs did not see: correcting adds noise, the raw rounds agree better
    noisy = ArchTimings([[10.0, 10.0, 10.0, 10.0], [12.0, 12.0, 12.0, 12.0]], [[1.0, 1.0, 1.0, 1.0], [1.0, 3.0, 1.0, 1.0]],
                        [[0, 1, 2, 3], [0, 1, 2, 3]])
    assert choose_headline({"corrected": noisy.round_agreement(1.0), "raw": noisy.round_agreement(None)}) == "raw"
    assert choose_headline({"raw": raw}) == "raw"


def test_validation_compares_at_the_base_speed(speed_lut):
    res = validate_lut(speed_lut, archs=[one_arch(), one_arch()], warmup=1, repeats=4, rounds=2, progress=False)
    assert res.corrected and res.settings["speed_base_ms"] > 0
    assert res.headline in ("corrected", "raw") and res.speed_corrected == (res.headline == "corrected")
    assert res.mape == (res.corrected if res.speed_corrected else res.uncorrected)["mape"]
    for r in res.rows:
        assert r.speed == pytest.approx(r.measured_ms / r.measured_at_base_ms)
        assert r.speed > 0 and r.predicted_ms == pytest.approx(r.predicted_at_base_ms * r.speed)
        assert r.error == pytest.approx((r.predicted_ms - r.measured_ms) / r.measured_ms)
        assert r.error == pytest.approx((r.predicted_at_base_ms - r.measured_at_base_ms) / r.measured_at_base_ms)
        assert r.error_uncorrected == pytest.approx((r.predicted_at_base_ms - r.measured_ms) / r.measured_ms)
    assert set(res.to_dict()["uncorrected"]) == {"mape", "within_10pct", "within_5pct", "kendall_tau", "mean_error"}
    assert set(res.round_agreement) == {"corrected", "raw"}
    raw = validate_lut(speed_lut, archs=[one_arch(), one_arch()], warmup=1, repeats=4, rounds=2, progress=False, speed_correction=False)
    assert not raw.speed_corrected and raw.headline == "raw" and not raw.corrected and all(r.speed == 1.0 and r.predicted_ms == r.predicted_at_base_ms
                                           and r.measured_at_base_ms == r.measured_ms for r in raw.rows)


def test_without_a_reference_nothing_is_scaled_and_runs_never_mix(tmp_path):
    sigs = get_space("ssr").signatures(one_arch(), H, W)[:4]
    out = tmp_path / "plain.json"
    profile_ops("ssr", H, W, method="isolated", out_path=out, signatures=sigs, heads=["classifier"], speed_reference=False,
                calibration_archs=0, **FAST)
    lut = load_lut(out)
    assert lut.provenance["speed_reference"] is None and lut.speed_base_ms is None and lut.summary()["speed"] is None
    assert all("ref_ms" not in e for e in lut.entries.values())
    assert all(lut.raw_cost(s) == lut.entries[s.key]["median_ms"] for s in sigs)
    with pytest.raises(RtsegError, match="speed_reference"):  # resuming with a reference would mix two kinds of entries
        profile_ops("ssr", H, W, method="isolated", out_path=out, signatures=sigs, heads=["classifier"], **FAST)
