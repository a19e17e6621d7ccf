"""The two guards on a LUT's quality, run for real: the recheck pass (an entry a burst of load
inflated is re-measured and lowered) and the layer calibration (one factor on the searchable layers'
entries, fitted on whole networks timed end to end)."""

from __future__ import annotations

import json
import random

import pytest

from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.latency.calibrate import CALIBRATION_SEED, fit_scale, split_prediction
from rtseg.latency.lut import is_slot_entry, load_lut
from rtseg.latency.profile import profile_ops
from rtseg.ops import OpSignature
from rtseg.spaces import get_space

H, W = 64, 128
FAST = dict(warmup=1, repeats=3, min_time_s=0.0, max_entry_s=0.05, threads=1, progress=False)


def one_arch() -> Arch:
    return get_space("ssr").sample(random.Random(5), num_classes=19, head="classifier")


@pytest.fixture()
def subset_lut(tmp_path):
    """The network-method entries of one ssr arch at 64x128 (a subset: no calibration is fitted)."""
    sigs = get_space("ssr").signatures(one_arch(), H, W)
    out = tmp_path / "subset.json"
    profile_ops("ssr", H, W, method="network", stack=2, out_path=out, signatures=sigs, heads=["classifier"], **FAST)
    return out, sigs


def test_fit_scale_recovers_a_known_factor():
    parts = [(2.0, 10.0), (3.0, 6.0), (1.5, 12.0)]
    measured = [f + 1.2 * l for f, l in parts]
    assert fit_scale(parts, measured) == pytest.approx(1.2, rel=1e-12)
    assert fit_scale([(1.0, 0.0)], [2.0]) == 1.0  # no layers: nothing to scale


def test_slot_entries_are_the_searchable_layers_and_only_they_are_scaled(subset_lut):
    out, sigs = subset_lut
    lut = load_lut(out)
    slot_types = {OpSignature.from_key(k).type for k, e in lut.entries.items() if is_slot_entry(e)}
    fixed_types = {OpSignature.from_key(k).type for k, e in lut.entries.items() if not is_slot_entry(e)}
    assert "nb1d" in slot_types <= {"nb1d", "stdc_block"} and fixed_types == {"db", "classifier", "resize"}
    assert lut.calibration_scale == 1.0 and not lut.has_calibration  # a subset run fits nothing
    raw = lut.predict(one_arch()).total_ms
    fixed, layers = split_prediction(lut, one_arch())
    assert raw == pytest.approx(fixed + layers, rel=1e-12)

    doc = json.loads(out.read_text())
    doc["calibration"] = {"scale": 1.5, "archs": 4}
    out.write_text(json.dumps(doc))
    scaled = load_lut(out)
    assert scaled.calibration_scale == 1.5
    assert scaled.predict(one_arch()).total_ms == pytest.approx(fixed + 1.5 * layers, rel=1e-12)
    assert scaled.constant_ms == pytest.approx(lut.constant_ms)  # the fixed parts and the constant are untouched
    nb = next(s for s in sigs if s.type == "nb1d")
    assert scaled.cost(nb) == pytest.approx(1.5 * scaled.raw_cost(nb))


@pytest.mark.parametrize("bad", [{"scale": -1.0}, {"scale": "2"}, {"archs": 4}, [1.2]])
def test_malformed_calibration_is_refused(subset_lut, bad):
    out, _ = subset_lut
    doc = json.loads(out.read_text())
    doc["calibration"] = bad
    out.write_text(json.dumps(doc))
    with pytest.raises(RtsegError, match="calibration must be an object with a positive numeric 'scale'"):
        load_lut(out)


def test_recheck_lowers_an_entry_a_burst_of_load_inflated(subset_lut):
    out, sigs = subset_lut
    doc = json.loads(out.read_text())
    assert all(e.get("checked") for e in doc["entries"].values())  # the first run rechecked everything
    nb = next(s for s in sigs if s.type == "nb1d")
    true_ms = doc["entries"][nb.key]["median_ms"]
    untouched = {k: e for k, e in doc["entries"].items() if k != nb.key}
    doc["entries"][nb.key] = dict(doc["entries"][nb.key], median_ms=20 * true_ms, p90_ms=25 * true_ms)
    del doc["entries"][nb.key]["checked"]  # as if the run had been interrupted before its recheck
    out.write_text(json.dumps(doc))

    profile_ops("ssr", H, W, method="network", stack=2, out_path=out, signatures=sigs, heads=["classifier"], **FAST)
    lut = load_lut(out)
    fixed = lut.entries[nb.key]
    assert fixed["replaced_ms"] == pytest.approx(20 * true_ms) and fixed["median_ms"] < 5 * true_ms and fixed["checked"]
    assert lut.provenance["recheck"] == {"checked": 1, "lowered": 1, "ratio": 0.8}
    assert {k: e for k, e in lut.entries.items() if k != nb.key} == untouched  # checked entries are not re-timed


@pytest.mark.slow
def test_profile_fits_the_calibration_on_whole_networks(tmp_path):
    """A complete LUT (the whole cas space at 64x128) gets a calibration from 3 archs timed end to end."""
    out = profile_ops("cas", H, W, out_path=tmp_path / "cas.json", num_classes=5, calibration_archs=3, **FAST)
    doc = json.loads(out.read_text())
    assert doc["complete"] and all(e.get("checked") for e in doc["entries"].values())
    record = doc.get("calibration") or doc["calibration_rejected"]  # rejected only when the fit is far from 1
    assert record["archs"] == 3 and record["seed"] == CALIBRATION_SEED and len(record["rows"]) == 3
    rows = record["rows"]
    assert all(r["measured_ms"] > 0 and r["layers_ms"] > 0 for r in rows)

    def sq(s: float) -> float:
        return sum((r["fixed_ms"] + s * r["layers_ms"] - r["measured_ms"]) ** 2 for r in rows)

    assert sq(record["scale"]) <= sq(1.0) + 1e-12  # the fit never does worse than the raw entries
    lut = load_lut(out)
    assert lut.calibration_scale == (record["scale"] if "calibration" in doc else 1.0)
    # a finished LUT re-run neither re-measures nor re-fits
    before = out.read_text()
    profile_ops("cas", H, W, out_path=out, num_classes=5, calibration_archs=3, **FAST)
    assert json.loads(out.read_text()).get("calibration") == doc.get("calibration")
    assert json.loads(out.read_text())["entries"] == json.loads(before)["entries"]
