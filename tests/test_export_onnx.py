"""Export: ONNX round trips for every space, exporter fallback, the FP16 pass, parity gates, metadata."""

import json
import random
import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F

import rtseg
from rtseg.errors import RtsegError
from rtseg.backends.onnx_fp16 import convert_fp16, is_fp16_onnx
from rtseg.backends.onnx_export import ExporterFallbackWarning, export_onnx, export_onnx_info, simplify_onnx
from rtseg.export.parity import ParityGateError, compare
from rtseg.export.pipeline import export_model
from rtseg.export.profiles import ExportOptions
from rtseg.backends.ort_session import make_session
from rtseg.io import file_sha256
from rtseg.spaces import get_space, space_names

HW = (64, 128)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Export runs small PyTorch reference passes; one intra-op thread keeps them fast when the 2
    cores are shared (OpenMP threads spin badly when oversubscribed)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _searchable():
    out = []
    for name in space_names():
        try:
            get_space(name).sample(random.Random(0))
        except RtsegError:  # the peer space
            continue
        out.append(name)
    return out


def _cases():
    cases = []
    for name in _searchable():
        sp = get_space(name)
        for seed in (0,) if name == "cas" else (0, 1):  # CAS cells trace into ~500-1000 ONNX nodes: one is enough
            head = sp.heads[seed % len(sp.heads)]
            cases.append(pytest.param(name, seed, head, id=f"{name}-{seed}-{head}"))
    return cases


@pytest.mark.parametrize("space,seed,head", _cases())
def test_sampled_archs_of_every_space_export_and_pass_the_gates(tmp_path, space, seed, head):
    sp = get_space(space)
    arch = sp.sample(random.Random(seed), num_classes=19, head=head)
    arch.name = f"{space}-{seed}"
    src = arch.save(tmp_path / "arch.json")
    div = sp.size_divisor
    hw = (max(HW[0], 2 * div), max(HW[1], 4 * div))
    res = export_model(str(src), ExportOptions(input_hw=hw, out_dir=tmp_path / "out", dynamic=seed == 1))
    assert res.onnx.exists() and res.onnx_fp16.exists() and res.metadata_path.exists()
    onnx.checker.check_model(str(res.onnx))
    onnx.checker.check_model(str(res.onnx_fp16))
    names = [p.name for p in res.parity]
    assert names[0] == "onnx fp32" and "onnx fp16" in names
    assert all(p.passed and p.finite for p in res.parity)
    fp32 = res.parity[0]
    assert fp32.agreement >= 0.9999 and fp32.max_abs_diff < 1e-3
    if seed == 1:  # dynamic H/W: checked at a second size as well
        assert any(n.startswith("onnx fp32 @") for n in names)
    meta = json.loads(res.metadata_path.read_text())
    assert meta["model"]["arch"]["genotype"] == arch.genotype
    assert meta["model"]["source_sha256"] == file_sha256(src)


@pytest.mark.parametrize("peer", ["erfnet", "stdc", "ddrnet"])
def test_peer_exports_with_parity(tmp_path, peer):
    res = export_model(peer, ExportOptions(input_hw=HW, out_dir=tmp_path))
    assert all(p.passed for p in res.parity) and res.parity[0].agreement >= 0.9999
    assert json.loads(res.metadata_path.read_text())["model"]["arch"]["space"] == "peer"


def test_export_onnx_keeps_its_signature_and_checks_the_graph(tmp_path):
    op = torch.nn.Conv2d(8, 4, 3, padding=1)
    p = export_onnx(op, (torch.randn(1, 8, 16, 16),), tmp_path / "op.onnx", 17)
    assert p == tmp_path / "op.onnx"
    onnx.checker.check_model(str(p))
    assert not list(tmp_path.glob(".*partial"))


class _Antialiased(torch.nn.Module):
    """An op the TorchScript exporter has no symbolic for (antialiased resize); dynamo exports it."""

    def forward(self, x):
        return F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)


def test_exporter_falls_back_to_dynamo_with_a_warning(tmp_path):
    x = torch.randn(1, 3, 32, 32)
    with pytest.warns(ExporterFallbackWarning, match="torchscript"):
        info = export_onnx_info(_Antialiased(), (x,), tmp_path / "aa.onnx", output_names=("y",))
    assert info.exporter == "dynamo" and info.opset >= 18 and info.fallback_reason
    y = make_session(info.path).run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(y, _Antialiased()(x).numpy(), atol=1e-4)
    # ...and it is exactly what TensorRT's parser refuses: found before any build starts
    from rtseg.backends.tensorrt_build import trt_unsupported

    assert any("antialias" in msg for msg in trt_unsupported(info.path))
    assert trt_unsupported(export_onnx(torch.nn.Conv2d(3, 3, 1), (x,), tmp_path / "c.onnx")) == []


def test_no_fallback_gives_one_clear_error(tmp_path):
    with pytest.raises(RtsegError, match="ONNX export failed"):
        export_onnx_info(_Antialiased(), (torch.randn(1, 3, 32, 32),), tmp_path / "aa.onnx", fallback=False)
    with pytest.raises(RtsegError, match="unknown ONNX exporter"):
        export_onnx_info(_Antialiased(), (torch.randn(1, 3, 32, 32),), tmp_path / "aa.onnx", exporter="tf")


def test_fp16_pass_keeps_fp32_io_and_exact_shape_math(tmp_path):
    """Resize sizes in a dynamic graph are shape math: they must stay FP32 (FP16 holds integers
    exactly only up to 2048), so a 4128-wide input still comes back 4128 wide."""
    model = rtseg.build_model("baseline1").eval()
    src = export_onnx(model, (torch.zeros(1, 3, 64, 128),), tmp_path / "m.onnx",
                      dynamic_axes={"input": {2: "H", 3: "W"}, "logits": {2: "H", 3: "W"}})
    dst = convert_fp16(src, tmp_path / "m.fp16.onnx")
    m16 = onnx.load(str(dst))
    assert is_fp16_onnx(m16) and not is_fp16_onnx(src)
    assert m16.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert m16.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 4128)).astype(np.float32)
    y = make_session(dst).run(None, {"input": x})[0]
    assert y.shape == (1, 19, 32, 4128) and y.dtype == np.float32 and np.isfinite(y).all()
    with pytest.raises(RtsegError, match="already FP16"):
        convert_fp16(dst, tmp_path / "again.onnx")


def test_simplify_keeps_a_valid_equal_graph(tmp_path):
    model = rtseg.build_model("erfnet").eval()
    x = torch.randn(1, 3, *HW)
    p = export_onnx(model, (x,), tmp_path / "e.onnx")
    before = len(onnx.load(str(p)).graph.node)
    kept, note = simplify_onnx(p, check_input=x.numpy())
    assert kept and "onnxslim" in note
    assert len(onnx.load(str(p)).graph.node) <= before
    with torch.no_grad():
        np.testing.assert_allclose(make_session(p).run(None, {"input": x.numpy()})[0], model(x).numpy(), atol=1e-4)


def test_compare_gates():
    rng = np.random.default_rng(0)
    ref = [rng.standard_normal((1, 5, 8, 8)).astype(np.float32)]
    same = compare(ref, [ref[0] + 1e-6], "fp32", "c", "r")
    assert same.passed and same.agreement == 1.0
    flipped = ref[0].copy()
    flipped[0, :, 0, 0] = -flipped[0, :, 0, 0]  # one pixel in 64 changes class
    bad = compare(ref, [flipped], "fp32", "c", "r")
    assert not bad.passed and bad.agreement < 0.9999
    nan = ref[0].copy()
    nan[0, 0, 0, 0] = np.nan
    rep = compare(ref, [nan], "fp16", "c", "r")
    assert not rep.finite and not rep.passed


def _overflowing_checkpoint(tmp_path):
    """A trained-looking checkpoint whose logits exceed FP16's range (65504): FP16 overflows."""
    from rtseg.checkpoint import save_checkpoint
    from rtseg.data.synthetic import synthetic_info

    arch = rtseg.load_arch("baseline1").with_(num_classes=10, name="hot")
    torch.manual_seed(0)
    model = rtseg.build_model(arch)
    with torch.no_grad():
        model.head.conv.weight.mul_(1e5)
    return save_checkpoint(tmp_path / "hot.pt", model, arch, synthetic_info(), input_hw=HW)


def test_fp16_overflow_fails_the_gate_with_figures_and_records_them(tmp_path):
    ckpt = _overflowing_checkpoint(tmp_path)
    with pytest.raises(ParityGateError, match="fp16 parity gate") as exc:
        export_model(str(ckpt), ExportOptions(out_dir=tmp_path / "out"))
    reps = {r.name: r for r in exc.value.reports}
    assert reps["onnx fp32"].passed
    assert not reps["onnx fp16"].passed and not reps["onnx fp16"].finite
    meta = json.loads((tmp_path / "out" / "model.json").read_text())
    assert meta["parity"]["onnx_fp16"]["passed"] is False
    # --no-check: the figures are still measured and recorded, the export completes
    res = export_model(str(ckpt), ExportOptions(out_dir=tmp_path / "out2", check=False))
    assert not res.to_dict()["passed"]


def test_checkpoint_export_records_its_training_preprocessing(tmp_path):
    from rtseg.checkpoint import save_checkpoint
    from rtseg.data.base import DatasetInfo

    info = DatasetInfo("mine", 3, ["a", "b", "c"], [[1, 2, 3], [4, 5, 6], [7, 8, 9]], mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    arch = rtseg.load_arch("baseline1").with_(num_classes=3, name="three")
    ckpt = save_checkpoint(tmp_path / "three.pt", rtseg.build_model(arch), arch, info, input_hw=(32, 64))
    res = export_model(str(ckpt), ExportOptions(fp16=False, simplify=False, out_dir=tmp_path / "o"))
    meta = json.loads(res.metadata_path.read_text())
    assert meta["input"]["shape"] == [1, 3, 32, 64]  # the checkpoint's training size
    assert meta["data_info"]["mean"] == [0.1, 0.2, 0.3] and meta["data_info"]["std"] == [0.4, 0.5, 0.6]
    assert meta["data_info"]["palette"] == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert meta["model"]["trained"] is True and meta["model"]["source_sha256"] == file_sha256(ckpt)
    assert meta["export"]["exporter"] == "torchscript" and meta["export"]["opset"] == 17
    assert "rtseg_version" in meta and meta["artifacts"]["onnx"]["sha256"] == file_sha256(res.onnx)
    assert res.onnx_fp16 is None and "onnx_fp16" not in meta["artifacts"]


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(RtsegError, match="neither a model file"):
        export_model("no-such-arch")
    with pytest.raises(RtsegError, match="not found"):
        export_model(str(tmp_path / "missing.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RtsegError, match="checkpoint"):
        export_model(str(bad))
    with pytest.raises(RtsegError, match="multiple of 16"):
        export_model("baseline1", ExportOptions(input_hw=(60, 128), out_dir=tmp_path))
    onnx_file = tmp_path / "x.onnx"
    onnx_file.write_bytes(b"")
    with pytest.raises(RtsegError, match="already an exported"):
        export_model(str(onnx_file))
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(RtsegError, match="not valid JSON"):
        export_model(str(broken))


def test_dynamo_exporter_path_passes_the_same_gates(tmp_path):
    res = export_model("baseline1", ExportOptions(input_hw=(32, 64), exporter="dynamo", out_dir=tmp_path))
    meta = json.loads(res.metadata_path.read_text())
    assert meta["export"]["exporter"] == "dynamo" and meta["export"]["opset"] >= 18
    assert all(p.passed for p in res.parity)
