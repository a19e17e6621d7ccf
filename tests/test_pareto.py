"""search/pareto.py reruns as documented from an empty folder, whatever the order of its variants."""

import functools
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from rtseg.flops import op_flops, sum_op_flops
from rtseg.latency import validate
from rtseg.latency.lut import load_lut
from rtseg.latency.profile import profile_ops
from rtseg.ops import OpSignature
from rtseg.spaces import get_space

H, W = 32, 64
ROOT = Path(__file__).resolve().parents[1]
#: Every search variant, in the reverse of the order the script lists them: the proxy variants, which
#: start from the families' picks, come before anything else has written those.
VARIANTS = ["default", "oneshot+proxy", "proxy", "oneshot", "weighted", "single-path"]


def _load_pareto():
    spec = importlib.util.spec_from_file_location("pareto", ROOT / "search" / "pareto.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _multiply_add_lut(path: Path) -> None:
    """Charge every entry of a LUT its multiply-adds (1 ms per million) and its skeleton their sum plus
    0.1 ms: a deterministic device. A LUT timed in seconds at 32x64 is noise (one run per entry, and a
    net's cost there is its count of operators, not their work), so the family picks, the random draws
    and the searches would land in different places on every run."""
    doc = json.loads(path.read_text())
    for key, entry in doc["entries"].items():
        ms = op_flops(OpSignature.from_key(key)) / 1e6
        entry.update(median_ms=ms, p10_ms=ms, p90_ms=ms)
    for sk in doc["skeletons"].values():
        ms = sum(doc["entries"][k]["median_ms"] for k in sk["fixed"]) + 0.1
        sk.update(median_ms=ms, p10_ms=ms, p90_ms=ms)
    path.write_text(json.dumps(doc))


@pytest.mark.slow
def test_pareto_runs_every_variant_into_an_empty_folder(tmp_path, monkeypatch):
    lut_path = profile_ops("ssr", H, W, "torch", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1, num_classes=10,
                           method="isolated", heads=["classifier"], out_path=tmp_path / "lut.json", progress=False, threads=1,
                           recheck=False, calibration_archs=0, speed_reference=False)
    _multiply_add_lut(lut_path)
    lut = load_lut(lut_path)
    pareto = _load_pareto()

    def on_the_lut(arch):
        """The family picks on the same device, read 6% high: the member picked within 5% of T then
        lies in [0.9 T, T], inside the proxy variants' band, which the baseline1 pick seeds."""
        if arch.space == lut.space:
            return 1.06 * lut.predict(arch, H, W).total_ms
        return 1.06 * sum_op_flops(get_space(arch.space).signatures(arch, H, W)) / 1e6

    monkeypatch.setattr(pareto, "_measure", lambda _lut: on_the_lut)
    # the candidates' final latencies are measured for real, in one short round rather than ten long ones
    monkeypatch.setattr(validate, "measure_archs_like_lut", functools.partial(validate.measure_archs_like_lut, warmup=1, repeats=3, rounds=1))
    out = tmp_path / "fresh"
    tiny = ["--fractions", "0.9", "--seeds", "1", "--randoms", "1", "--epochs", "1", "--train-len", "4", "--val-len", "2",
            "--batch", "2", "--jobs", "1", "--search-epochs", "1", "--search-train-len", "4", "--search-batch", "2",
            "--search-warmup-epochs", "0", "--search-minutes", "1", "--os-epochs", "1", "--os-evaluations", "4",
            "--os-score-len", "2", "--os-band", "0.8", "1.0", "--os-minutes", "1", "--px-epochs", "1", "--px-train-len", "4",
            "--px-evaluations", "3", "--px-population", "2", "--hy-finalists", "1", "--families", "baseline1", "ddrnet",
            "--default-set", "epochs=1", "train_len=4", "val_len=2", "batch=2", "population=2", "parents=2", "evaluations=3",
            "gradient_epochs=1", "gradient_train_len=4", "oneshot_epochs=1", "oneshot_train_len=4", "oneshot_evaluations=4",
            "oneshot_score_len=2", "band=[0.8, 1.0]", "final_round=1"]
    monkeypatch.setattr(sys, "argv", ["pareto.py", "--lut", str(lut_path), "--variants", *VARIANTS, *tiny, "--out", str(out)])
    pareto.main()

    rec = json.loads((out / "pareto.json").read_text())
    (budget,) = rec["budgets"]
    names = {row["name"]: row["kind"] for row in budget["rows"]}
    assert names == {"searched-df": "searched", "searched-hy": "searched", "searched-px": "searched", "searched-os": "searched", "searched-ws": "searched",
                     "searched": "searched", "random0": "random", "baseline1": "family", "ddrnet": "family"}
    assert {v["searched"] for v in budget["verdicts"]} == {n for n, k in names.items() if k == "searched"}
    assert (out / "pareto.md").exists() and (out / "pareto.png").exists() and (out / "T0.9" / "layers.png").exists()
    assert json.loads((out / "T0.9" / "searched-df" / "config.json").read_text())["oneshot_epochs"] == 1  # --default-set reached it
    assert rec["search"]["default_set"]["oneshot_epochs"] == 1 and rec["space_options"] == {}  # and the record says so
    assert json.loads((out / "T0.9" / "families.json").read_text()).keys() == {"baseline1", "ddrnet"}


@pytest.mark.slow
def test_a_budget_in_ms_on_a_cas_lut_gets_a_cas_search(tmp_path, monkeypatch):
    """--targets-ms on another space's LUT: the default variant searches that space, its reference arch seeded."""
    h, w = 64, 128
    lut_path = profile_ops("cas", h, w, "torch", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1, num_classes=10,
                           out_path=tmp_path / "lut.json", progress=False, threads=1, recheck=False, calibration_archs=0,
                           speed_reference=False)
    pareto = _load_pareto()
    target = 1.1 * load_lut(lut_path).predict(pareto.load_arch("cas_ref").with_(num_classes=10), h, w).total_ms
    monkeypatch.setattr(validate, "measure_archs_like_lut", functools.partial(validate.measure_archs_like_lut, warmup=1, repeats=3, rounds=1))
    tiny = ["--seeds", "1", "--randoms", "1", "--epochs", "1", "--train-len", "4", "--val-len", "2", "--batch", "2", "--jobs", "1",
            "--no-families", "--default-set", "epochs=1", "train_len=4", "val_len=2", "batch=2", "population=2", "parents=2",
            "evaluations=2", "gradient_stage=false", "band=[0.8, 1.0]", "final_round=1", "verify_latency=false"]
    out = tmp_path / "fresh"
    monkeypatch.setattr(sys, "argv", ["pareto.py", "--lut", str(lut_path), "--targets-ms", f"{target:.3f}", "--variants", "default",
                                      *tiny, "--out", str(out)])
    pareto.main()
    (folder,) = out.glob("T*/searched-df")
    summary = json.loads((folder / "search.json").read_text())
    assert summary["space"] == "cas" and summary["stages"]["reference"]["arch_name"] == "cas_ref"
    rec = json.loads((out / "pareto.json").read_text())
    assert {row["name"] for row in rec["budgets"][0]["rows"]} == {"searched-df", "random0"}
    assert rec["space"] == "cas" and rec["space_options"] == {}  # the space's size is in the record


def test_a_run_of_another_arch_is_moved_aside_not_reused(tmp_path):
    """A re-picked family member (or a search picked again) trains afresh; the earlier run is kept beside."""
    pareto = _load_pareto()
    old, new = pareto.load_arch("baseline1").to_dict(), pareto.load_arch("erfnet").to_dict()
    run = tmp_path / "train" / "baseline1-s0"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"arch": old}))
    pareto._clear_stale_run(run, old)
    assert (run / "config.json").exists()
    pareto._clear_stale_run(run, new)
    assert not run.exists() and json.loads((tmp_path / "train" / "baseline1-s0.replaced-1" / "config.json").read_text())["arch"] == old
    pareto._clear_stale_run(run, new)  # nothing there now: nothing to move
    assert not run.exists()


def test_latencies_are_measured_again_when_a_candidates_arch_changes(tmp_path):
    """latency.json is reused only for the very candidates and archs it measured; a search picked
    again (or an older file without arch fingerprints) means every candidate is measured again."""
    pareto = _load_pareto()
    calls: list[int] = []

    def measure(archs):
        calls.append(len(archs))
        return [float(len(calls))] * len(archs)

    b1, erf = pareto.load_arch("baseline1"), pareto.load_arch("erfnet")
    names = [("0.3", "searched-df"), ("", "baseline1")]
    path = tmp_path / "latency.json"
    first = pareto._latencies(names, [b1, b1], path, measure)
    assert calls == [2] and [r["measured_ms"] for r in first] == [1.0, 1.0]
    assert pareto._latencies(names, [b1, b1], path, measure) == first and calls == [2]  # the same archs: read back
    again = pareto._latencies(names, [erf, b1], path, measure)  # the search's pick changed
    assert calls == [2, 2] and [r["measured_ms"] for r in again] == [2.0, 2.0]
    path.write_text(json.dumps({"rows": [{k: v for k, v in r.items() if k != "arch_id"} for r in again]}))
    pareto._latencies(names, [erf, b1], path, measure)  # an older file, without fingerprints
    assert calls == [2, 2, 2]


def test_a_search_picked_again_in_its_folder_replaces_the_candidate(tmp_path):
    """candidates.json caches each search's pick, but the search's own folder decides: a pick made again
    there (rtseg search --resume) is the candidate the experiment trains and measures."""
    from types import SimpleNamespace

    pareto = _load_pareto()
    old, new = pareto.load_arch("baseline1"), pareto.load_arch("erfnet")
    (tmp_path / "candidates.json").write_text(json.dumps({"searched-df": {"arch": old.to_dict(), "kind": "searched",
                                                                          "search": {"origin": "mutation"}}}))
    (tmp_path / "searched-df").mkdir()
    new.save(tmp_path / "searched-df" / "arch.json")
    (tmp_path / "searched-df" / "search.json").write_text(json.dumps({"origin": "reference", "measured_over_target": 0.96}))
    lut = SimpleNamespace(input_hw=(H, W), search_space=lambda: get_space("ssr"))
    args = SimpleNamespace(variants=["default"], randoms=0, seed=0)
    cands = pareto._candidates(lut, "lut.json", 5.0, tmp_path, args)
    assert cands["searched-df"]["arch"].genotype == new.genotype and cands["searched-df"]["search"]["origin"] == "reference"
    saved = json.loads((tmp_path / "candidates.json").read_text())["searched-df"]
    assert saved["arch"]["genotype"] == new.genotype


def test_repicking_some_families_keeps_the_others_picks(tmp_path, monkeypatch):
    """--repick-families measures again only the families of this run; families.json keeps the rest."""
    from types import SimpleNamespace

    pareto = _load_pareto()
    macs_ms = lambda arch: sum_op_flops(get_space(arch.space).signatures(arch, H, W)) / 1e6  # noqa: E731 (a deterministic device)
    monkeypatch.setattr(pareto, "_measure", lambda _lut: macs_ms)
    lut = SimpleNamespace(input_hw=(H, W), num_classes=10)
    kept = {"arch": pareto.load_arch("erfnet").to_dict(), "kind": "family", "pick": {"note": "an earlier pick"}}
    (tmp_path / "families.json").write_text(json.dumps({"ddrnet": kept, "baseline1": kept}))
    picked = pareto._families(lut, 20.0, tmp_path, ["baseline1"], repick=True)
    saved = json.loads((tmp_path / "families.json").read_text())
    assert saved["ddrnet"] == kept and saved["baseline1"]["pick"] != kept["pick"] and list(picked) == ["baseline1"]
    assert picked["baseline1"]["arch"].space == "ssr"


@pytest.mark.slow
def test_the_cas_size_probe_trains_in_band_draws_of_each_size_and_writes_its_record(tmp_path, monkeypatch):
    """search/cas_sizes.py from an empty folder: draws of each size timed on the LUT's runtime, kept
    within the band, trained, and the figures record rendered by tools/render_tables.py's reader."""
    lut_path = profile_ops("cas", H, W, "onnxruntime", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1, num_classes=4,
                           out_path=tmp_path / "lut.json", progress=False, threads=1, recheck=False, calibration_archs=0,
                           speed_reference=False)
    spec = importlib.util.spec_from_file_location("cas_sizes", ROOT / "search" / "cas_sizes.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)  # type: ignore[union-attr]
    sizes = {"default": {}, "narrow": {"width": 4, "layout": "NRN", "nodes": 2, "ms_from": 0}}
    out = tmp_path / "fresh"
    monkeypatch.setattr(sys, "argv", ["cas_sizes.py", "--lut", str(lut_path), "--target-ms", "1000", "--band", "0", "--sizes", json.dumps(sizes),
                                      "--per-size", "1", "--epochs", "1", "--train-len", "4", "--val-len", "2", "--batch", "2", "--jobs", "1",
                                      "--out", str(out)])
    probe.main()
    rec = json.loads((out / "cas-sizes.json").read_text())
    assert rec["format"] == "rtseg.figures" and [row[0] for row in rec["rows"]] == ["default", "narrow"]
    drawn = json.loads((out / "drawn.json").read_text())["sizes"]
    assert drawn["narrow"][0][0]["genotype"]["config"]["width"] == 4 and 0 < drawn["narrow"][0][1] <= 1000
    assert sorted(p.name for p in (out / "train").iterdir()) == ["default-0", "narrow-0"]
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import render_tables
    finally:
        sys.path.pop(0)
    assert any("narrow" in line for line in render_tables.figures([(out / "cas-sizes.json", rec)]))
    argv = sys.argv[:]
    argv[argv.index("--target-ms") + 1] = "900"  # the folder's draws were made at another T
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="other settings"):
        probe.main()
