"""The quickstart end to end at a tiny size: every stage runs and the report links what it made."""

import json

import pytest

from rtseg.quickstart import QuickstartConfig, run_quickstart
from rtseg.reporting import SilentReporter

pytestmark = pytest.mark.slow


def test_quickstart_runs_every_stage_and_writes_a_report(tmp_path):
    out = tmp_path / "qs"
    # the torch backend keeps this test short: an onnxruntime LUT exports every operator to ONNX
    # (minutes for the whole space); the one-runtime rule is the same for every backend
    assert QuickstartConfig().backend == "onnxruntime"  # what a user gets by default
    cfg = QuickstartConfig(out=out, minutes=1.0, input_hw=(32, 64), demo_frames=12, profile_repeats=1, validate_samples=3,
                           backend="torch")
    state = run_quickstart(cfg, reporter=SilentReporter())
    assert list(state["stages"]) == ["profile", "validate", "search", "train", "export", "bench", "demo"]
    for f in ("report.md", "report.html", "lut.json", "lut_validation.png", "search/arch.json", "search/gradient/trajectories.png",
              "search/proxy/evolution.png", "search/oneshot/supernet.pt", "train/curve.png", "train/best.pt",
              "baseline1-scaled.json", "export/model.onnx", "export/model.json", "demo_input.mp4", "demo.mp4", "overlay_0.png"):
        assert (out / f).is_file(), f
    # baseline1 scaled is trained on its own unless the search kept it (then one net, trained once, and the report says so)
    same = state["stages"]["train"]["baseline1_scaled"]["same_net_as_searched"]
    assert (out / "train-baseline1" / "best.pt").is_file() != same
    assert ("The search kept baseline1 scaled to T" in (out / "report.md").read_text()) == same
    md = (out / "report.md").read_text()
    assert "lut_validation.png" in md and "train/curve.png" in md and "demo.mp4" in md
    # the default strategy ran, and the report sets the searched net beside baseline1 scaled to the same budget
    search = state["stages"]["search"]
    assert search["strategy"] == "default" and {"gradient", "oneshot", "reference", "proxy"} <= set(search["stages"])
    tr = state["stages"]["train"]
    assert tr["baseline1_scaled"]["epochs"] == tr["epochs"] and "| baseline1 scaled to T" in md and "| searched |" in md
    assert "| - |" not in md  # both rows carry their measured latency
    # the baseline row is the reference the search measured and competed against (one member of the family)
    assert search["stages"]["reference"]["scaled_by"] == "measured on the LUT's runtime"
    assert tr["baseline1_scaled"]["knobs"] == search["stages"]["reference"]["knobs"]
    assert json.loads((out / "baseline1-scaled.json").read_text())["genotype"] == \
        json.loads((out / "search" / "reference.json").read_text())["arch"]["genotype"]
    demo = state["stages"]["demo"]
    assert demo["frames"] == 12
    # the synthetic street is rendered to a file first and the demo replays that file
    assert demo["source"]["kind"] == "file" and demo["source"]["name"].endswith("demo_input.mp4")
    assert demo["input_video"]["frames"] == 12 and demo["input_video"]["size_hw"] == [64, 128]
    assert "replayed from the file" in md and "% of inference" in md
    # one runtime from LUT to deployment: the LUT, the search's measured check and the demo share it
    assert state["stages"]["profile"]["backend"] == "torch" == state["stages"]["search"]["runtime"]["lut_backend"]
    assert state["stages"]["demo"]["backend"] == "torch"
    assert "measured with torch" in md.split("## 2.")[0]
    assert json.loads((out / "report.json").read_text())["stages"]["export"]["passed"] is True
    # a re-run keeps the finished stages
    again = run_quickstart(cfg, reporter=SilentReporter())
    assert again["stages"]["profile"]["seconds"] == state["stages"]["profile"]["seconds"]


def test_cli_quickstart_help(cli):
    r = cli("quickstart", "--help")
    assert r.exit_code == 0 and "--minutes" in r.output
