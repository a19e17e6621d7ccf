"""What a search is run on and with: space sizes (--space-opt), each space's own regularizer,
shrinking in every space with levels, real data used whole (or an explicit subset), resume refusals."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import cityscapes_tree
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.latency.lut import load_lut
from rtseg.search import SearchConfig, run_search
from rtseg.search.objective import shrink
from rtseg.spaces import get_space, parse_space_options, space_slug
from rtseg.spaces.cas_cells import BACKBONE_PRIMITIVES, edge_name

H, W = 32, 64
#: Non-default sizes, small enough to profile and search in seconds.
OPTIONS = {
    "cas": ["width=4", "layout=NRN", "nodes=2", "ms_nodes=2", "ms_width=8", "stem=[8,8,16]", "ms_from=0"],
    "dcnas": ["width=4", "layers=1", "stem=8", "head=8"],
}


def test_space_options_are_parsed_validated_and_normalized():
    opts = parse_space_options(OPTIONS["cas"])
    assert opts["stem"] == [8, 8, 16] and opts["layout"] == "NRN" and opts["width"] == 4
    cas = get_space("cas", opts)
    assert cas.config.nodes == 2 and cas.options() == opts
    assert get_space("cas", {"width": 8}).options() == {}  # the default value is no option
    assert space_slug("dcnas", {"width": 4, "layers": 1}) == "dcnas-layers1-width4"
    a = get_space("dcnas", parse_space_options(OPTIONS["dcnas"])).sample(random.Random(0), 10)
    assert a.genotype["config"]["width"] == 4 and a.genotype["config"]["layers"] == 1
    assert rtseg.build_model(a.to_dict())(torch.randn(1, 3, H, W)).shape == (1, 10, H, W)  # the JSON alone rebuilds it
    for space, opts, match in (("ssr", {"width": 4}, "takes only --space-opt stdc"), ("cas", {"depth": 3}, "unknown fields: depth"),
                               ("dcnas", {"layers": 0}, "layers must be a positive integer")):
        with pytest.raises(RtsegError, match=match):
            get_space(space, opts)
    with pytest.raises(RtsegError, match="KEY=VALUE"):
        parse_space_options(["width"])


def test_space_opt_help_names_every_size_option_each_space_takes():
    from dataclasses import fields

    from rtseg.cli.params import SPACE_OPT_HELP
    from rtseg.spaces.cas_cells import CASConfig
    from rtseg.spaces.dcnas import DCNASConfig

    listed = {part.split(":")[0].strip(): part.split(":")[1] for part in SPACE_OPT_HELP.split("(")[1].split(")")[0].split(";")}
    for space, config in (("cas", CASConfig), ("dcnas", DCNASConfig)):
        named = {n.strip() for n in listed[space].split(",")}
        assert named == {f.name for f in fields(config)}, space
        get_space(space, config().to_dict())  # each one is accepted
    assert "stdc=false" in listed["ssr"]


def test_each_space_defaults_to_its_own_papers_regularizer(tmp_path):
    assert [get_space(s).default_reg for s in ("ssr", "cas", "dcnas")] == ["ssr", "none", "dcnas"]
    with pytest.raises(RtsegError, match="unknown regularizer 'dcnas' for the cas space: choose ssr, entropy, none$"):
        run_search(SearchConfig(space="cas", reg="dcnas", lut=str(tmp_path / "x.json"), latency_ms=1.0), tmp_path / "run", progress=False)


def test_shrinking_works_in_cas_and_dcnas():
    cas = get_space("cas", parse_space_options(OPTIONS["cas"])).supernet(10)
    name = edge_name("normal", 0, 0)
    with torch.no_grad():
        cas.alphas[name.replace(".", "__")][:] = 0.0
        cas.alphas[name.replace(".", "__")][3] = 5.0  # the others at exp(-5) < 0.1 of the best
    removed = shrink(cas, cas.decisions(), 0.1)
    assert {i for n, i in removed if n == name} == set(range(len(BACKBONE_PRIMITIVES) + 1)) - {3}
    # a node keeps two edges that can carry an operation, however strongly "none" wins elsewhere
    with torch.no_grad():
        for j, i in ((1, 0), (1, 1), (1, 2)):
            a = cas.alphas[edge_name("normal", j, i).replace(".", "__")]
            a[:] = -5.0
            a[0] = 5.0
    shrink(cas, cas.decisions(), 0.1)
    with_op = [i for i in range(3) if bool(cas._alive(edge_name("normal", 1, i))[1:].any())]
    assert len(with_op) == 2
    assert cas(torch.randn(1, 3, H, W)).shape == (1, 10, H, W)
    cas_space = get_space("cas", parse_space_options(OPTIONS["cas"]))
    cas_space.validate(cas.decode())

    dc = get_space("dcnas", parse_space_options(OPTIONS["dcnas"])).supernet(10)
    op = "s8_l1.op"
    with torch.no_grad():
        dc.alphas[op.replace(".", "__")][:] = torch.tensor([5.0, 4.0, -5.0, -5.0, -5.0, -5.0])  # e^-1 of the best kept, e^-10 not
    removed = shrink(dc, dc.decisions(), 0.1)
    assert sorted(i for n, i in removed if n == op) == [2, 3, 4, 5] and not any(n.endswith(".paths") for n, _ in removed)
    assert dc(torch.randn(1, 3, H, W)).shape == (1, 10, H, W)
    assert dc.decode().genotype["modules"][1]["kernel"] == 3


def _cityscapes(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    return cityscapes_tree(root, H, W, n_train, n_val)


@pytest.mark.slow
@pytest.mark.parametrize("space", ["cas", "dcnas"])
def test_sized_space_profiles_searches_and_decodes_on_cityscapes(cli, tmp_path, space):
    opts = [a for o in OPTIONS[space] for a in ("--space-opt", o)]
    options = parse_space_options(OPTIONS[space])
    lut_path = tmp_path / "lut.json"
    r = cli("profile-ops", "--space", space, *opts, "--input", f"{H}x{W}", "--classes", "19", "--threads", "1", "--warmup", "0",
            "--repeats", "1", "--min-time", "0", "--method", "isolated", "--no-recheck", "--calibration-archs", "0",
            "--no-speed-reference", "--out", lut_path, "--json")
    assert r.exit_code == 0, r.output
    lut = load_lut(lut_path)
    assert json.loads(r.stdout)["space_options"] == options and lut.space_options == options and lut.complete
    r = cli("arch", "sample", "--space", space, *opts, "--classes", "19", "--out", tmp_path / "a.json")
    assert r.exit_code == 0, r.output
    r = cli("arch", "show", tmp_path / "a.json", "--input", f"{H}x{W}", "--lut", lut_path, "--json")
    assert r.exit_code == 0, r.output  # the LUT covers every operator of an arch sampled at these sizes

    data = f"cityscapes:{_cityscapes(tmp_path / 'cs')}"
    cheapest = lut.predict(lut.search_space().cheapest_arch(lut.cost, H, W, 19), H, W).total_ms
    target = round(2 * cheapest, 4)

    def search(*extra, options=opts, latency=target):
        return cli("search", "--strategy", "gradient", "--space", space, *options, "--lut", lut_path, "--latency-ms", str(latency), "--data", data,
                   "--input", f"{H}x{W}", "--epochs", "1", "--batch", "1", "--warmup-epochs", "0", "--no-verify", *extra)

    r = search("--out", tmp_path / "run", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    # the training split whole (no default cut), one image of four held out to score on; no validation image
    assert {k: s["images"][k] for k in ("fit", "select", "train_available", "validation_split_read")} == \
        {"fit": 3, "select": 1, "train_available": 4, "validation_split_read": False}
    assert s["reg"] == get_space(space).default_reg and s["space_options"] == options
    arch = rtseg.load_arch(tmp_path / "run" / "arch.json")
    assert {k: arch.genotype["config"][k] for k in options} == options
    assert lut.predict(arch, H, W).total_ms == pytest.approx(s["predicted_latency_ms"])
    assert rtseg.build_model(arch)(torch.randn(1, 3, H, W)).shape == (1, 19, H, W)

    # an explicit subset is honoured and reported against what the split holds
    r = search("--train-len", "2", "--val-len", "1", "--out", tmp_path / "sub", "--json")
    assert r.exit_code == 0, r.output
    images = json.loads(r.stdout)["images"]
    assert (images["fit"], images["select"], images["train_available"]) == (2, 1, 4)
    # the LUT's sizes must be the search's
    r = search("--out", tmp_path / "other", options=opts[2:])
    assert r.exit_code == 2 and r.output.count("error:") == 1 and "--space-opt" in r.output, r.output
    # resuming with another budget is refused, naming it; --minutes may change
    r = search("--minutes", "5", "--resume", "--out", tmp_path / "run", latency=2 * target)
    assert r.exit_code == 2 and r.output.count("error:") == 1, r.output
    assert f"--latency-ms {target} (now {2 * target})" in r.output and "minutes" not in r.output
