import json
import random

import numpy as np
import pytest
import torch

import rtseg
from rtseg.arch import Arch
from rtseg.errors import RtsegError
from rtseg.ops import Op, OpSpec, build_op
from rtseg.spaces import get_space, load_arch
from rtseg.spaces.dcnas import OP_CHOICES, SCALES, DCNASConfig, DCNASSpace, MixtureLayer
from tests.conftest import randomize_bn

SPACE = get_space("dcnas")
#: A small config for the supernet-behaviour tests (the behaviour does not depend on the size).
SMALL = DCNASSpace(DCNASConfig(width=4, layers=2, stem=8, head=8))
def COST(s):
    """Any deterministic per-signature cost that tells the candidates apart."""
    return float(s.spec.c_out + s.h + sum(v for _, v in s.spec.params if isinstance(v, int)))


def test_fixed_supernet_runs_full_channels_and_uses_exactly_the_arch_modules():
    """The one-hot equality itself is in the space contract (tests/test_space_contract.py)."""
    arch = SPACE.sample(random.Random(0), num_classes=5)
    sn = SPACE.supernet(5)
    sn.fix(arch)
    assert sn.partial_channel == 1
    u = sn.usage()
    present = {(m["scale"], m["layer"]) for m in arch.genotype["modules"]}
    assert {n for n, v in u.items() if float(v) == 1.0} == present and all(float(v) in (0.0, 1.0) for v in u.values())


def test_supernet_trains_with_sampling_and_partial_channels():
    sn = SMALL.supernet(4)
    assert sn.path_sampling and sn.partial_channel == 4 and sn.n_paths == 3
    arch_ids = {id(p) for p in sn.arch_parameters()}
    assert arch_ids and not arch_ids & {id(p) for p in sn.weight_parameters()}
    assert {d.level for d in sn.decisions()} == {"op", "path"}
    assert all(d.level == "op" for d in sn.active_decisions())
    sn.train()
    loss = sn(torch.randn(2, 3, 64, 64)).logsumexp(1).mean()
    reg = sn.regularization()
    assert set(reg) == {"entropy", "binary", "inputs"} and all(torch.isfinite(v) for v in reg.values())
    (loss + sum(reg.values())).backward()
    # every operator decision got a gradient; path parameters of sampled paths did too
    assert all(sn.alphas[k].grad is not None for k in sn.alphas if k.endswith("__op"))
    assert any(sn.alphas[k].grad is not None and sn.alphas[k].grad.abs().sum() > 0 for k in sn.alphas if k.endswith("__paths"))


def test_path_sampling_runs_only_sampled_paths():
    sn = SMALL.supernet(4)
    calls = []
    for m in sn.modules():
        if isinstance(m, Op) and m.spec.type == "shape_align":
            m.register_forward_hook(lambda mod, i, o: calls.append(1))
    x = torch.randn(1, 3, 64, 64)
    sn.train()
    with torch.no_grad():
        sn(x)
        sampled = len(calls)
        calls.clear()
        sn.path_sampling = False
        sn(x)
    all_paths = len(calls)
    n_align = sum(1 for m in sn.modules() if isinstance(m, Op) and m.spec.type == "shape_align")
    assert all_paths == n_align and sampled <= 3 * len(sn.nodes) < all_paths


def test_sampling_without_replacement_follows_tempered_beta():
    sn = SPACE.supernet(4)
    node = (4, 3)
    with torch.no_grad():
        sn.alphas["s4_l3__paths"].zero_()
        sn.alphas["s4_l3__paths"][[0, 5, 9]] = 4.0
    sn.train()
    sn.on_epoch(9, 10)  # tau at its end value: sampling concentrates on the strong paths
    assert float(sn.tau) == pytest.approx(sn.tau_end)
    hits = 0
    for _ in range(20):
        idx, w = sn._active_paths()[node]
        assert len(idx) == 3 == len(set(idx)) and float(w.sum()) == pytest.approx(1.0)
        hits += set(idx) == {0, 5, 9}
    assert hits >= 18
    sn.on_epoch(0, 10)
    assert float(sn.tau) == pytest.approx(sn.tau_start)


def test_mixture_layer_partial_channels_bypass_and_match_narrow_ops():
    cfg = DCNASConfig()
    layer = MixtureLayer(cfg, 8).eval()  # width 16
    randomize_bn(layer, 0)
    x = torch.randn(2, 16, 8, 8)
    p = torch.softmax(torch.randn(len(OP_CHOICES)), 0)
    with torch.no_grad():
        y = layer(x, p, [True] * len(OP_CHOICES), 4)
        assert torch.equal(y[:, 4:], x[:, 4:])  # (1 - S) I passes through
        # the sliced full-width operator is exactly a narrow operator holding the first weights
        op = layer.ops[3]
        narrow = build_op(OpSpec.make("mbconv", 4, 4, 1, kernel=op.kernel, expansion=op.expansion)).eval()
        h = 4 * op.expansion
        sd = {k: (v[:h] if v.ndim and v.shape[0] == 16 * op.expansion else v) for k, v in op.state_dict().items()}
        sd["expand.weight"] = sd["expand.weight"][:, :4]
        sd["project.weight"] = op.state_dict()["project.weight"][:4, :h]
        for s in ("weight", "bias", "running_mean", "running_var"):
            sd[f"bn3.{s}"] = op.state_dict()[f"bn3.{s}"][:4]
        narrow.load_state_dict(sd)
        torch.testing.assert_close(op(x[:, :4], width=4), narrow(x[:, :4]), rtol=0, atol=1e-6)


def test_breadth_first_decoding_drops_unreachable_modules():
    sn = SPACE.supernet(19)
    with torch.no_grad():
        for n in sn.nodes:
            beta = sn.alphas[f"s{n[0]}_l{n[1]}__paths"]
            beta.fill_(-5.0)
            if n[1] == 3:  # last layer: only the same-scale stem feature and the 1/8 module of layer 2
                beta[SCALES.index(n[0])] = 3.0
                beta[4 + 4 + 1] = 3.0
            else:
                beta[SCALES.index(n[0])] = 3.0
    arch = sn.decode()
    nodes = [(m["scale"], m["layer"]) for m in arch.genotype["modules"]]
    assert nodes == [(8, 2)] + [(s, 3) for s in SCALES]  # layer 1 is never reached
    assert all(m["inputs"] == [[m["scale"], 0], [8, 2]] for m in arch.genotype["modules"] if m["layer"] == 3)
    SPACE.validate(arch)


def test_regularizers_push_paths_to_at_most_k_inputs():
    sn = SPACE.supernet(4)
    sn.train()
    before = float(sn.regularization()["inputs"].detach())
    assert float(sn.lagrange.sum()) > 0  # dual ascent: multipliers rise while a module keeps > k inputs
    opt = torch.optim.Adam(sn.arch_parameters(), lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        sum(sn.regularization().values()).backward()
        opt.step()
    with torch.no_grad():
        counts = [int((sn.strengths(n) >= 0.5).sum()) for n in sn.nodes]
    assert before > 0 and all(1 <= c <= 3 for c in counts)


def test_candidate_signatures_refuse_a_head_the_space_lacks():
    with pytest.raises(RtsegError, match="head 'aggregation' is not available"):
        SPACE.candidate_signatures(64, 128, 19, heads=("aggregation",))


def test_expected_cost_weighs_paths():
    sn = SPACE.supernet(19)
    e = sn.expected_cost(COST, 128, 256)
    e.backward()
    assert sn.alphas["s8_l2__paths"].grad.abs().sum() > 0 and sn.alphas["s8_l3__op"].grad.abs().sum() > 0


def test_remove_drops_operators_and_alignment_layers():
    sn = SPACE.supernet(19)
    n_before = sum(p.numel() for p in sn.weight_parameters())
    sn.remove("s4_l2.op", 5)
    sn.remove("s4_l2.paths", 1)
    assert sum(p.numel() for p in sn.weight_parameters()) < n_before
    assert float(sn.probs("s4_l2.op").detach()[5]) == 0.0 and float(sn.probs("s4_l2.paths").detach()[1]) == 0.0
    small = SMALL.supernet(4)
    small.remove("s8_l2.op", 0)
    small.remove("s8_l2.paths", 0)
    small(torch.randn(1, 3, 64, 64))


def test_config_is_rebuilt_from_json_alone():
    cfg = DCNASConfig(width=4, layers=2, stem=8, head=8, max_inputs=2)
    arch = DCNASSpace(cfg).sample(random.Random(0), num_classes=3)
    d = json.loads(arch.to_json())
    model = rtseg.build_model(d).eval()
    assert model.config == cfg
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3, 64, 64)


def test_onnx_export_matches_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    arch = SPACE.sample(random.Random(2), num_classes=5)
    model = rtseg.build_model(arch)
    randomize_bn(model, 2)
    model.eval()
    x = torch.randn(1, 3, 64, 128)
    path = tmp_path / "dcnas.onnx"
    torch.onnx.export(model, x, str(path), dynamo=False, opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda g: g["modules"][0].update(kernel=9), r"kernel = 9 is out of range"),
        (lambda g: g["modules"][0].update(expansion=4), r"expansion = 4 is out of range"),
        (lambda g: g["modules"][0].update(inputs=[]), r"must list 1 to 3"),
        (lambda g: g["modules"][4].update(inputs=[[4, 2]]), r"\[4, 2\] is not an earlier module"),
        (lambda g: g["modules"][4].update(inputs=[[4, 0], [4, 0]]), r"is listed twice"),
        (lambda g: g["modules"].pop(), r"lacks the last-layer module scale 32 layer 3"),
        (lambda g: g["modules"].pop(0), r"takes input \[4, 1\], which is not listed"),
        (lambda g: [m.update(inputs=[[m["scale"], 0]]) for m in g["modules"][4:8]], r"scale 4 layer 1 feeds no other module"),
        (lambda g: g["config"].update(layers=0), r"layers must be a positive integer"),
        (lambda g: g["modules"][0].update(op="x"), r"unknown fields: op"),
    ],
)
def test_invalid_archs_are_clear_errors(mutate, match):
    d = load_arch("dcnas_hrnet").to_dict()
    mutate(d["genotype"])
    with pytest.raises(RtsegError, match=match):
        load_arch(d)


def test_cli_sample_and_show(cli, tmp_path):
    out = tmp_path / "dcnas.json"
    r = cli("arch", "sample", "--space", "dcnas", "--seed", "3", "--classes", "6", "--out", out)
    assert r.exit_code == 0, r.output
    r = cli("arch", "show", out, "--input", "64x128", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["space"] == "dcnas" and d["flops"] > 0 and d["ops"][-2]["type"] == "dense_head"
    r = cli("arch", "show", "dcnas_hrnet", "--input", "128x256")
    assert r.exit_code == 0 and "mbconv" in r.output


@pytest.mark.slow
def test_memory_benchmark_script_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "search" / "bench_dcnas_memory.py"
    out = tmp_path / "mem.json"
    r = subprocess.run([sys.executable, str(script), "--width", "4", "--layers", "1", "--input", "64x64", "--batch", "1",
                        "--steps", "1", "--rounds", "1", "--threads", "1", "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    assert [(row["path_sampling"], row["partial_channel"]) for row in d["rows"]] == [(False, 1), (True, 1), (False, 4), (True, 4)]
    assert all(row["peak_mb"] >= 0 and row["step_s"] > 0 for row in d["rows"]) and "peak MB" in r.stderr
