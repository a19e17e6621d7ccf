"""One-shot search: one-path supernet forward, in-band sampling, evolution, files and resume."""

import json
import random

import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.latency.lut import load_lut
from rtseg.latency.profile import profile_ops
from rtseg.search.evolution import BandSampler
from rtseg.search.oneshot import OneShotConfig, run_oneshot
from rtseg.spaces import get_space

H, W = 32, 64


def test_forward_path_is_the_decoded_network_with_inherited_weights():
    space = get_space("ssr")
    supernet = space.supernet(10).eval()
    for seed in range(3):
        arch = space.sample(random.Random(seed), num_classes=10)
        choices = {**supernet.argmax_choices(), **supernet.choices_of(arch)}
        net = space.build(arch)
        net.load_state_dict(supernet.derive_weights(arch))
        x = torch.randn(2, 3, H, W)
        torch.testing.assert_close(supernet.forward_path(x, choices), net.eval()(x), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def lut_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("lut") / "lut.json"
    return profile_ops("ssr", H, W, "torch", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1,
                       num_classes=10, heads=["classifier"], out_path=out, progress=False, threads=1, recheck=False)


def _target(lut_path):
    """The median predicted latency of uniformly drawn archs: a budget whose band many archs reach."""
    lut = load_lut(lut_path)
    rng = random.Random(0)
    ms = sorted(lut.predict(get_space("ssr").sample(rng, num_classes=10), H, W).total_ms for _ in range(41))
    return ms[20]


def _cfg(lut_path, target, **kw):
    base = dict(lut=str(lut_path), latency_ms=target, input_hw=(H, W), epochs=1, batch=4, train_len=8, score_len=4,
                score_batch=4, population=4, parents=2, evaluations=8, band=(0.8, 1.0), verify_latency=False)
    base.update(kw)
    return OneShotConfig(**base)


@pytest.mark.slow
def test_sampler_mutations_and_crossovers_stay_in_the_band(lut_path):
    from rtseg.search.common import prepare

    lut = load_lut(lut_path)
    target = _target(lut_path)
    supernet = get_space("ssr").supernet(10)
    s = BandSampler(supernet, prepare(_cfg(lut_path, target)), 0.8 * target, target, random.Random(0))
    a, b = s.uniform(), s.uniform()
    kids = [s.mutate(a, 0.2), s.crossover(a, b)] + [s.uniform() for _ in range(5)]
    for kid in kids:
        assert kid is not None and 0.8 * target <= lut.predict(s.arch(kid), H, W).total_ms <= target


@pytest.mark.slow
def test_oneshot_search_writes_an_in_band_arch_and_resumes(lut_path, tmp_path):
    target = _target(lut_path)
    res = run_oneshot(_cfg(lut_path, target), tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"arch.json", "search.json", "evolution.json", "evolution.png", "config.json", "state.pt", "state.json",
            "supernet.pt", "supernet.json"} <= files
    arch = rtseg.load_arch(tmp_path / "run" / "arch.json")
    assert 0.8 * target <= load_lut(lut_path).predict(arch, H, W).total_ms <= target
    assert arch.meta["searched_with"]["strategy"] == "oneshot"
    assert arch.meta["searched_with"]["lut_backend"] == "torch"
    evolved = json.loads((tmp_path / "run" / "evolution.json").read_text())
    assert len(evolved) == 8 and max(r["score"] for r in evolved) == res.summary["oneshot_score"]
    rtseg.build_model(arch)(torch.randn(1, 3, H, W))
    from rtseg.search.evolution import top_archs

    finalists = top_archs(tmp_path / "run" / "evolution.json", 2)
    assert [a.genotype for a in finalists][0] == arch.genotype and len(finalists) == 2

    # more evaluations on resume: training is not redone, earlier scores are kept
    more = run_oneshot(_cfg(lut_path, target, evaluations=12), tmp_path / "run", resume=True)
    assert more.summary["supernet_steps"] == res.summary["supernet_steps"]
    assert more.summary["evaluations"] == 12 and more.summary["oneshot_score"] >= res.summary["oneshot_score"]


@pytest.mark.slow
def test_oneshot_refuses_a_changed_config_and_an_impossible_band(lut_path, tmp_path):
    target = _target(lut_path)
    run_oneshot(_cfg(lut_path, target, evaluations=4, population=4), tmp_path / "run")
    with pytest.raises(RtsegError, match="latency_ms"):
        run_oneshot(_cfg(lut_path, target * 0.9, evaluations=4, population=4), tmp_path / "run", resume=True)
    with pytest.raises(RtsegError, match="infeasible"):
        run_oneshot(_cfg(lut_path, 1e-6, band=(0.5, 1.0)), tmp_path / "tiny")


@pytest.mark.slow
def test_proxy_search_starts_from_a_seed_arch_and_keeps_to_the_band(lut_path, tmp_path):
    from rtseg.search.proxy import ProxyConfig, run_proxy

    target = _target(lut_path)
    lut = load_lut(lut_path)
    rng = random.Random(3)
    seed = next(a for a in (get_space("ssr").sample(rng, num_classes=10) for _ in range(2000))
                if 0.85 * target <= lut.predict(a, H, W).total_ms <= target)
    rtseg.arch.Arch.save(seed, tmp_path / "seed.json")
    cfg = ProxyConfig(lut=str(lut_path), latency_ms=target, input_hw=(H, W), band=(0.8, 1.0), epochs=1, train_len=4,
                      val_len=2, batch=2, population=2, parents=2, evaluations=3, seed_archs=[str(tmp_path / "seed.json")],
                      verify_latency=False)
    res = run_proxy(cfg, tmp_path / "run")
    evolved = json.loads((tmp_path / "run" / "evolution.json").read_text())
    assert len(evolved) == 3 and evolved[0]["origin"] == "seed"
    assert json.loads(evolved[0]["key"]) == seed.genotype
    assert 0.8 * target <= lut.predict(res.arch, H, W).total_ms <= target
    assert res.arch.meta["searched_with"]["strategy"] == "proxy"
    again = run_proxy(cfg, tmp_path / "run", resume=True)  # every proxy run is kept: nothing is retrained
    assert again.summary["evaluations"] == 3 and again.arch.genotype == res.arch.genotype


@pytest.mark.slow
def test_the_final_round_ranks_by_the_mean_over_seeds_and_a_resume_adds_only_missing_seeds(lut_path, tmp_path):
    from rtseg.search.proxy import ProxyConfig, run_proxy

    target = _target(lut_path)
    common = dict(lut=str(lut_path), latency_ms=target, input_hw=(H, W), band=(0.8, 1.0), epochs=1, train_len=4, val_len=2,
                  batch=2, population=2, parents=2, evaluations=3, final_round=2, verify_latency=False)
    run = tmp_path / "run"
    one = run_proxy(ProxyConfig(**common, final_seeds=1), run)
    first = {r["origin"] + str(r["score"]): r["final_scores"] for r in one.summary["final_round"]["archs"]}
    assert len(first) == 2 and all(len(v) == 1 for v in first.values())
    trained = {p: p.stat().st_mtime_ns for p in (run / "final").rglob("*") if p.is_file()}
    assert trained
    # resumed with three seeds: the first seed's runs are kept as they are, the two others trained
    three = run_proxy(ProxyConfig(**common, final_seeds=3), run, resume=True)
    final = three.summary["final_round"]
    assert final["recipe"]["train_seeds"] == [1, 2, 3]
    assert {p: p.stat().st_mtime_ns for p in (run / "final").rglob("*") if p.is_file()} == trained
    assert (run / "final-seed2").is_dir() and (run / "final-seed3").is_dir()
    for r in final["archs"]:
        scores = r["final_scores"]
        assert len(scores) == 3 and scores[:1] == first[r["origin"] + str(r["score"])]
        assert r["final_score"] == pytest.approx(sum(scores) / 3)
    # the pick is the best mean, and the arch the final round ranked first
    assert three.summary["final_score"] == max(r["final_score"] for r in final["archs"])


@pytest.mark.slow
def test_cli_search_strategy_oneshot_and_its_refusals(cli, lut_path, tmp_path):
    target = _target(lut_path)
    common = ["search", "--lut", lut_path, "--latency-ms", f"{target:.6f}", "--input", f"{H}x{W}", "--epochs", "1",
              "--train-len", "8", "--batch", "4", "--band-low", "0.8", "--no-verify"]
    r = cli(*common, "--strategy", "oneshot", "--evaluations", "4", "--out", tmp_path / "os", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["strategy"] == "oneshot" and summary["evaluations"] == 4
    assert 0.8 * target <= load_lut(lut_path).predict(rtseg.load_arch(tmp_path / "os" / "arch.json"), H, W).total_ms <= target
    for extra, words in ((["--strategy", "oneshot", "--seed-arch", "baseline1"], "--strategy oneshot has no --seed-arch"),
                         (["--strategy", "annealing"], "unknown --strategy"),
                         (["--strategy", "gradient", "--jobs", "2"], "--strategy gradient has no --jobs"),
                         (["--strategy", "oneshot", "--reg", "ssr"], "--strategy oneshot has no --reg"),
                         (["--strategy", "proxy", "--band-low", "1.5"], "--band-low")):
        r = cli(*common, *extra, "--out", tmp_path / "bad")
        assert r.exit_code != 0 and words in r.output and "Traceback" not in r.output, (extra, r.output)


@pytest.mark.slow
def test_a_seed_arch_far_outside_the_band_is_refused_with_the_fix(lut_path, tmp_path):
    from rtseg.search.proxy import ProxyConfig, run_proxy

    lut = load_lut(lut_path)
    cheapest = lut.predict(get_space("ssr").cheapest_arch(lut.cost, H, W, 10), H, W).total_ms
    cfg = ProxyConfig(lut=str(lut_path), latency_ms=1.01 * cheapest, input_hw=(H, W), band=(0.8, 1.0), epochs=1, train_len=4,
                      val_len=2, batch=2, population=2, evaluations=2, seed_archs=["baseline1"], verify_latency=False)
    with pytest.raises(RtsegError, match="rtseg arch scale"):
        run_proxy(cfg, tmp_path / "run")
