"""The search strategies as one table, the default strategy's stages, the FLOPs budget in every stage,
a reused supernet, the measured pick, no validation image read, and proxy trainings under torchrun."""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import cityscapes_tree

import rtseg
from rtseg.errors import RtsegError
from rtseg.latency.lut import load_lut
from rtseg.latency.profile import profile_ops
from rtseg.search import DEFAULT_STRATEGY, STRATEGIES, SearchSettings, get_strategy, run_strategy
from rtseg.spaces import get_space

H, W = 32, 64


def test_every_strategy_is_one_row_with_a_settings_config():
    assert DEFAULT_STRATEGY == "default" and DEFAULT_STRATEGY in STRATEGIES
    common = {f.name for f in fields(SearchSettings)}
    for s in STRATEGIES.values():
        assert issubclass(s.config, SearchSettings) and common <= s.field_names() and callable(s.run) and s.about
        cfg = s.make_config(lut="x.json", latency_ms=1.0)
        for name, value in s.defaults.items():
            assert getattr(cfg, name) == value
    # a setting the strategy lacks is refused, naming who has it
    with pytest.raises(RtsegError, match=r"--strategy oneshot has no setting seed_archs \(it belongs to --strategy .*proxy"):
        get_strategy("oneshot").make_config(seed_archs=["baseline1"])
    with pytest.raises(RtsegError, match="unknown --strategy"):
        get_strategy("annealing")


def test_cli_defaults_to_the_default_strategy_and_refuses_foreign_flags(cli, tmp_path):
    lut = tmp_path / "lut.json"
    lut.write_text("{}")
    r = cli("search", "--lut", lut, "--latency-ms", "5", "--warmup-epochs", "1", "--out", tmp_path / "run")
    assert r.exit_code != 0 and r.output.count("error:") == 1 and "--strategy default has no --warmup-epochs" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "run").exists()
    r = cli("search", "--strategy", "gradient", "--lut", lut, "--latency-ms", "5", "--supernet", tmp_path, "--out", tmp_path / "run")
    assert r.exit_code != 0 and "--strategy gradient has no --supernet" in r.output


@pytest.fixture(scope="module")
def lut_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("lut") / "lut.json"
    return profile_ops("ssr", H, W, "torch", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1,
                       num_classes=10, heads=["classifier"], out_path=out, progress=False, threads=1, recheck=False)


def _target(lut_path: Path) -> float:
    lut = load_lut(lut_path)
    rng = random.Random(0)
    return sorted(lut.predict(get_space("ssr").sample(rng, num_classes=10), H, W).total_ms for _ in range(41))[20]


TINY = dict(input_hw=(H, W), epochs=1, train_len=8, val_len=4, batch=2, population=2, parents=2, evaluations=3,
            gradient_epochs=1, gradient_train_len=8, oneshot_epochs=1, oneshot_train_len=8, oneshot_evaluations=4,
            band=(0.8, 1.0))


@pytest.mark.slow
def test_default_strategy_runs_every_stage_and_keeps_to_both_budgets(lut_path, tmp_path):
    from rtseg.flops import sum_op_flops

    target = _target(lut_path)
    base = rtseg.load_arch("baseline1").with_(num_classes=10)
    flops_g = 0.9 * sum_op_flops(get_space("ssr").signatures(base, H, W)) / 1e9
    cfg = get_strategy("default").make_config(lut=str(lut_path), latency_ms=target, flops_g=flops_g, verify_latency=False, **TINY)
    res = run_strategy("default", cfg, tmp_path / "run")
    s = json.loads((tmp_path / "run" / "search.json").read_text())
    assert s["strategy"] == "default" and s["flops_budget"] == int(flops_g * 1e9) and s["flops_over_budget"] <= 1.0
    stages = s["stages"]
    assert not stages["calibrate"]["ran"] and stages["gradient"]["ran"] and stages["oneshot"]["ran"] and stages["reference"]["ran"]
    assert stages["reference"]["family"] == "baseline1" and set(stages["proxy"]["seeds"]) <= {"gradient", "oneshot-1", "oneshot-2",
                                                                                              "oneshot-3", "reference", "reference-stdc-s1",
                                                                                              "reference-stdc-s2"}
    # no arch over the FLOPs budget was scored in either evolution, nor picked
    for run in ("oneshot", "proxy"):
        rows = json.loads((tmp_path / "run" / run / "evolution.json").read_text())
        assert rows and all(r["flops"] <= flops_g * 1e9 for r in rows), run
    lut = load_lut(lut_path)
    arch = rtseg.load_arch(tmp_path / "run" / "arch.json")
    assert arch.genotype == res.arch.genotype and arch.meta["searched_with"]["strategy"] == "default"
    assert 0.8 * target <= lut.predict(arch, H, W).total_ms <= target
    assert (tmp_path / "run" / "oneshot" / "supernet.pt").is_file()
    # the final round retrained the best proxy archs and the reference, longer, and the pick is the best of it
    final = s["final_round"]
    assert final["recipe"]["train_len"] == 3 * cfg.train_len and any(r["origin"] == "reference" for r in final["archs"])
    assert s["final_score"] == max(r["final_score"] for r in final["archs"])
    assert final["recipe"]["train_seeds"] == [1, 2, 3] and all(len(r["final_scores"]) == 3 for r in final["archs"])
    assert stages["proxy"]["evaluations"] == 3 and stages["proxy"]["final_round"] == 3  # as set; one-shot-seeded default
    # resumed: every finished stage is kept, nothing is trained again
    again = run_strategy("default", cfg, tmp_path / "run", resume=True)
    assert again.arch.genotype == res.arch.genotype


def test_a_search_without_oneshot_finalists_spends_more_on_the_proxy():
    from rtseg.search.staged import PROXY_EFFORT, proxy_effort

    cfg = get_strategy("default").make_config(space="cas", lut="lut.json", latency_ms=4.0)
    assert cfg.evaluations is None and cfg.final_round is None
    assert proxy_effort(cfg, True) == PROXY_EFFORT[True] and proxy_effort(cfg, False) == PROXY_EFFORT[False]
    assert PROXY_EFFORT[False]["evaluations"] > PROXY_EFFORT[True]["evaluations"]
    assert PROXY_EFFORT[False]["final_round"] > PROXY_EFFORT[True]["final_round"]
    given = get_strategy("default").make_config(space="cas", lut="lut.json", latency_ms=4.0, evaluations=8, final_round=0)
    assert proxy_effort(given, False) == {"evaluations": 8, "final_round": 0}
    assert get_strategy("proxy").make_config(space="cas", lut="lut.json", latency_ms=4.0).evaluations == 14


@pytest.mark.slow
def test_a_space_without_a_family_seeds_its_reference_arch(tmp_path):
    """cas has no family that scales: the default search seeds the built-in cas_ref, moved into the band."""
    h, w = 64, 128
    lut_path = profile_ops("cas", h, w, "torch", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1,
                           num_classes=10, out_path=tmp_path / "lut.json", progress=False, threads=1, recheck=False)
    lut = load_lut(lut_path)
    ref = lut.predict(rtseg.load_arch("cas_ref").with_(num_classes=10), h, w).total_ms
    tiny = {**TINY, "input_hw": (h, w), "evaluations": 2, "gradient_stage": False}
    cfg = get_strategy("default").make_config(space="cas", lut=str(lut_path), latency_ms=1.1 * ref, verify_latency=False, **tiny)
    run_strategy("default", cfg, tmp_path / "run")
    s = json.loads((tmp_path / "run" / "search.json").read_text())
    assert s["stages"]["reference"] == {"ran": True, "arch_name": "cas_ref", "predicted_latency_ms": pytest.approx(ref)}
    assert s["stages"]["proxy"]["seeds"] == ["reference"] and not s["stages"]["oneshot"]["ran"]
    # no one-shot finalists: the final round takes 5 archs unless told otherwise; evaluations as set
    assert s["stages"]["proxy"]["evaluations"] == 2 and s["stages"]["proxy"]["final_round"] == 5
    assert 0.8 * 1.1 * ref <= lut.predict(rtseg.load_arch(tmp_path / "run" / "arch.json"), h, w).total_ms <= 1.1 * ref


@pytest.mark.slow
def test_a_trained_supernet_serves_another_budget(lut_path, tmp_path):
    target = _target(lut_path)
    st = get_strategy("oneshot")
    first = run_strategy("oneshot", st.make_config(lut=str(lut_path), latency_ms=target, input_hw=(H, W), epochs=1, train_len=8,
                                                   score_len=4, batch=4, population=2, parents=2, evaluations=3, band=(0.8, 1.0),
                                                   verify_latency=False), tmp_path / "first")
    rec = json.loads((tmp_path / "first" / "supernet.json").read_text())
    assert rec["steps"] == first.summary["supernet_steps"] > 0 and rec["span_ms"][0] <= 0.8 * target < target <= rec["span_ms"][1]
    second = run_strategy("oneshot", st.make_config(lut=str(lut_path), latency_ms=0.8 * target, input_hw=(H, W), train_len=8,
                                                    score_len=4, population=2, parents=2, evaluations=3, band=(0.8, 1.0),
                                                    supernet=str(tmp_path / "first"), verify_latency=False), tmp_path / "second")
    assert second.summary["supernet_steps"] == 0 and second.summary["supernet"]["reused"] == str(tmp_path / "first")
    assert not (tmp_path / "second" / "state.pt").exists()
    assert 0.64 * target <= load_lut(lut_path).predict(second.arch, H, W).total_ms <= 0.8 * target
    # a record that names an option at its default value (as written while STDC layers were an option) is
    # the default space's; one of the paper's space is refused up front
    reuse = st.make_config(lut=str(lut_path), latency_ms=0.8 * target, input_hw=(H, W), train_len=8, score_len=4, population=2,
                           parents=2, evaluations=2, band=(0.8, 1.0), supernet=str(tmp_path / "first"), verify_latency=False)
    rec = json.loads((tmp_path / "first" / "supernet.json").read_text())
    (tmp_path / "first" / "supernet.json").write_text(json.dumps({**rec, "space_options": {"stdc": True}}))
    assert run_strategy("oneshot", reuse, tmp_path / "fourth").summary["supernet"]["reused"] == str(tmp_path / "first")
    (tmp_path / "first" / "supernet.json").write_text(json.dumps({**rec, "space_options": {"stdc": False}}))
    with pytest.raises(RtsegError, match="was trained for another search: space_options"):
        run_strategy("oneshot", reuse, tmp_path / "fifth")
    with pytest.raises(RtsegError, match="holds no trained supernet"):
        run_strategy("oneshot", st.make_config(lut=str(lut_path), latency_ms=target, input_hw=(H, W), supernet=str(tmp_path)),
                     tmp_path / "third")


def test_the_fit_walk_moves_an_arch_into_a_band_by_few_decisions(lut_path):
    from rtseg.search.common import prepare
    from rtseg.search.evolution import BandSampler, EvolutionState, fit_walk, ranked_for_pick
    from rtseg.search.oneshot import OneShotConfig

    target = _target(lut_path)
    ctx = prepare(OneShotConfig(lut=str(lut_path), latency_ms=target, input_hw=(H, W)))
    sampler = BandSampler(get_space("ssr").supernet(10), ctx, 0.5 * target, target, random.Random(0))
    start = sampler.uniform()
    for low, high in ((1.04, 1.07), (0.90, 0.93)):  # a few percent up, and down: the LUT's line missed by that much
        p = sampler.latency(start)
        walked = fit_walk(sampler, start, low * p, high * p)
        assert walked is not None and low * p <= sampler.latency(walked) <= high * p
        assert 1 <= sum(walked[n] != start[n] for n in start) <= 6
    assert fit_walk(sampler, start, 1e-6, 2e-6) is None  # a range no arch of the space reaches
    state = EvolutionState(scored={"a": {"score": 0.5}, "b": {"score": 0.4, "final_score": 0.3}, "c": {"score": 0.3, "final_score": 0.35}})
    assert [r["score"] for r in ranked_for_pick(state)] == [0.3, 0.4, 0.5]  # the final round's order first


def test_an_evolution_breeds_on_past_a_generation_of_repeats(lut_path):
    """Two parents mutated at a low rate often breed only archs already scored; the evolution goes on to its
    evaluations rather than stopping at the first such generation."""
    from rtseg.search.common import prepare
    from rtseg.search.evolution import BandSampler, EvolutionState, evolve
    from rtseg.search.oneshot import OneShotConfig

    target = _target(lut_path)
    ctx = prepare(OneShotConfig(lut=str(lut_path), latency_ms=target, input_hw=(H, W)))
    for seed in range(3):
        sampler = BandSampler(get_space("ssr").supernet(10), ctx, 0.8 * target, target, random.Random(seed))
        rng = random.Random(seed)
        state = evolve(EvolutionState(), sampler, lambda batch: [rng.random() for _ in batch], population=2, parents=2,
                       evaluations=40, mutate_prob=0.01)
        assert len(state.scored) == 40


@pytest.mark.slow
def test_the_pick_is_the_best_finalist_that_fits_as_measured(lut_path):
    from rtseg.search.common import prepare
    from rtseg.search.evolution import BandSampler, EvolutionState, choose_measured
    from rtseg.search.oneshot import OneShotConfig

    target = _target(lut_path)
    ctx = prepare(OneShotConfig(lut=str(lut_path), latency_ms=target, input_hw=(H, W)))
    sampler = BandSampler(get_space("ssr").supernet(10), ctx, 0.5 * target, target, random.Random(0))
    state = EvolutionState()
    for i, score in enumerate((0.3, 0.2, 0.1)):
        state.scored[str(i)] = {"choices": sampler.uniform(), "score": score, "origin": "random", "generation": 0,
                                "predicted_latency_ms": 0.0}
    best, measured = choose_measured(ctx, state, sampler, finalists=3)
    assert len(measured["finalists"]) == 3 and all(f["measured_latency_ms"] > 0 for f in measured["finalists"])
    fitting = [f for f in measured["finalists"] if f["measured_latency_ms"] <= target]
    top = measured["finalists"][0]
    assert ("fitted_from" in best) == any(w.get("kept") for w in measured["fit_walks"])
    if best["score"] == top["score"] and (top["measured_latency_ms"] <= target or "fitted_from" in best):
        assert measured["measured_latency_ms"] <= target  # the best-ranked, as it is when it fits, else walked under T
    elif fitting:  # the best-ranked could not be walked under T: the best that fits (or a small change of it)
        assert top["measured_latency_ms"] > target and best["score"] == fitting[0]["score"]
        assert measured["measured_latency_ms"] <= target
    else:
        assert best["score"] == min(measured["finalists"], key=lambda f: f["measured_latency_ms"])["score"]
    # nothing fits a budget of a microsecond: the fastest, said so
    ctx.cfg.latency_ms = 1e-3
    said = []
    best, measured = choose_measured(ctx, state, sampler, finalists=3, say=said.append)
    fastest = min(measured["finalists"], key=lambda f: f["measured_latency_ms"])
    assert best["score"] == fastest["score"] and "no finalist fits" in measured["measured_note"] and len(said) == 1


def _cityscapes(root: Path, n_train: int = 10, n_val: int = 2) -> Path:
    return cityscapes_tree(root, H, W, n_train, n_val)


@pytest.mark.slow
def test_a_search_on_a_file_dataset_never_reads_its_validation_split(tmp_path):
    root = _cityscapes(tmp_path / "cs")
    lut_path = profile_ops("ssr", H, W, "torch", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1, num_classes=19,
                           heads=["classifier"], out_path=tmp_path / "lut19.json", progress=False, threads=1, recheck=False)
    lut = load_lut(lut_path)
    rng = random.Random(0)
    target = sorted(lut.predict(get_space("ssr").sample(rng, num_classes=19), H, W).total_ms for _ in range(41))[20]
    # the validation images are made unreadable: any read of one fails the search
    for p in (root / "leftImg8bit" / "val").rglob("*.png"):
        p.write_bytes(b"not a png")
    shutil.rmtree(root / "gtFine" / "val")
    cfg = get_strategy("default").make_config(lut=str(lut_path), latency_ms=target, data=f"cityscapes:{root}", verify_latency=False,
                                              **{**TINY, "train_len": None, "val_len": None, "gradient_train_len": None,
                                                 "oneshot_train_len": 8})
    res = run_strategy("default", cfg, tmp_path / "run")
    assert res.summary["images"]["validation_split_read"] is False
    # 10 training images: 2 held out to score on, 8 to train on, in every stage
    grad = json.loads((tmp_path / "run" / "gradient" / "search.json").read_text())["images"]
    assert (grad["fit"], grad["select"]) == (8, 2)
    proxies = [json.loads(p.read_text()) for p in (tmp_path / "run" / "proxy" / "proxy").glob("*/summary.json")]
    assert proxies and all(p["images"]["train"] == 8 and p["images"]["val"] == 2 for p in proxies)


@pytest.mark.slow
def test_proxy_trainings_split_across_torchrun_ranks(torchrun, lut_path, tmp_path):
    target = _target(lut_path)
    out = tmp_path / "ddp"
    r = torchrun("search", "--strategy", "proxy", "--lut", lut_path, "--latency-ms", f"{target:.6f}", "--input", f"{H}x{W}",
                 "--epochs", "1", "--train-len", "4", "--val-len", "2", "--batch", "2", "--evaluations", "4", "--band-low", "0.8",
                 "--device", "cpu", "--no-verify", "--out", out, "--json", timeout=400)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads(r.stdout[r.stdout.index("{"):])  # rank 0 alone prints
    assert s["world_size"] == 2 and s["ranks_agree"] and s["evaluations"] == 4
    rows = json.loads((out / "evolution.json").read_text())
    # every candidate trained exactly once, by one rank, and both ranks trained
    assert len(rows) == 4 and len(list((out / "proxy").iterdir())) == 4
    assert {r["trained_by_rank"] for r in rows} == {0, 1}


def test_a_finished_or_foreign_run_folder_is_refused_without_resume_or_overwrite(cli, tmp_path):
    from rtseg.rundir import claim_run_dir

    lut = tmp_path / "lut.json"
    lut.write_text("{}")
    train_run = claim_run_dir(tmp_path / "train-run", "train", {"lr": 1.0})
    train_run.finish()
    train_run.release()
    (tmp_path / "train-run" / "config.json").write_text('{"lr": 1.0}')
    before = (tmp_path / "train-run" / "config.json").read_bytes()
    r = cli("search", "--lut", lut, "--latency-ms", "5", "--out", tmp_path / "train-run")
    assert r.exit_code != 0 and r.output.count("error:") == 1 and "Traceback" not in r.output, r.output
    assert (tmp_path / "train-run" / "config.json").read_bytes() == before
    finished = claim_run_dir(tmp_path / "done", "search", {"strategy": "default"})
    finished.finish()
    finished.release()
    (tmp_path / "done" / "arch.json").write_text("{}")
    r = cli("search", "--lut", lut, "--latency-ms", "5", "--out", tmp_path / "done")
    assert r.exit_code != 0 and "--overwrite" in r.output and (tmp_path / "done" / "arch.json").read_text() == "{}", r.output


def test_a_flops_budget_below_every_arch_is_refused_up_front(lut_path):
    from rtseg.search.common import prepare
    from rtseg.search.oneshot import OneShotConfig

    with pytest.raises(RtsegError, match=r"FLOPs budget 1e-09 G is infeasible: the ssr arch of fewest FLOPs"):
        prepare(OneShotConfig(lut=str(lut_path), latency_ms=_target(lut_path), input_hw=(H, W), flops_g=1e-9))


def test_the_summary_table_shows_the_final_round_and_the_fit():
    from rich.console import Console

    from rtseg.cli.search import summary_table

    record = json.loads((Path(__file__).resolve().parents[1] / "search" / "results" / "default" / "cas-128x256.json").read_text())
    console = Console(width=200, record=True)
    console.print(summary_table(record, "cas"))
    text = console.export_text()
    assert "final round (proxy -> final score)" in text and "fit to T as measured" in text and "(kept)" in text


@pytest.mark.slow
def test_the_default_strategy_searches_stdc_layers_and_an_older_lut_stays_plain(lut_path, tmp_path):
    lut = load_lut(lut_path)
    assert lut.space_options == {} and lut.complete  # the default ssr space: its LUT prices STDC layers
    target = _target(lut_path)
    cfg = get_strategy("default").make_config(lut=str(lut_path), latency_ms=target, verify_latency=False, **TINY)
    res = run_strategy("default", cfg, tmp_path / "run")
    s = json.loads((tmp_path / "run" / "search.json").read_text())
    assert s["space_options"] == {} and res.arch.meta["searched_with"]["space_options"] == {}
    # the uniform STDC nets are seeded beside baseline1 scaled, each brought into the band
    assert s["stages"]["reference"]["layer_kinds"] == ["reference-stdc-s1", "reference-stdc-s2"]
    assert {"reference", "reference-stdc-s1", "reference-stdc-s2"} <= set(s["stages"]["proxy"]["seeds"])
    assert 0.8 * target <= lut.predict(res.arch, H, W).total_ms <= target
    # the one-shot evolution drew and scored archs with STDC layers: the search sees the choice
    rows = json.loads((tmp_path / "run" / "oneshot" / "evolution.json").read_text())
    layers = [b for r in rows for st in r["arch"]["genotype"]["stages"] for b in st]
    assert any(b.get("op") == "stdc" for b in layers) and any("op" not in b for b in layers)
    # a LUT written before STDC layers were the default records no options: it meant the plain space
    doc = json.loads(Path(lut_path).read_text())
    del doc["space_options"]
    doc["entries"] = {k: v for k, v in doc["entries"].items() if '"stdc_block"' not in k}
    (tmp_path / "older.json").write_text(json.dumps(doc))
    older = load_lut(tmp_path / "older.json")
    assert older.space_options == {"stdc": False}
    # an arch with STDC layers on it: one line that names the option
    with_stdc = rtseg.load_arch("baseline1").to_dict()
    with_stdc.update(num_classes=10, name="b1-stdc")
    with_stdc["genotype"]["stages"][1][0] = {"op": "stdc", "spatial": 1}
    assert lut.predict(with_stdc, H, W).total_ms > 0
    with pytest.raises(RtsegError, match="b1-stdc uses layers that LUT .* was not profiled for: .* --space-opt stdc=true"):
        older.predict(with_stdc, H, W)
    # the LUT's choices are the search's: a search in the other space is refused up front, saying what to give
    with pytest.raises(RtsegError, match=r"asks for default; give the LUT's \(--space-opt stdc=false\)"):
        run_strategy("default", get_strategy("default").make_config(lut=str(tmp_path / "older.json"), latency_ms=target,
                                                                    verify_latency=False, **TINY), tmp_path / "plain")
    with pytest.raises(RtsegError, match=r"asks for \{'stdc': False\}; give the LUT's \(no --space-opt\)"):
        run_strategy("default", get_strategy("default").make_config(lut=str(lut_path), latency_ms=target, space_options={"stdc": False},
                                                                    verify_latency=False, **TINY), tmp_path / "plain2")
