"""One way to time whole networks (rtseg.backends.measure), and the layering it keeps: the arch record
imports neither torch nor the spaces, and the spaces import nothing above them."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import rtseg
from rtseg.backends.measure import LatencyMeasure, measure_networks
from rtseg.backends.onnx_export import export_onnx
from rtseg.errors import RtsegError

ON = LatencyMeasure((16, 32), backend="torch", device="cpu", threads=1)


def _nets() -> list[nn.Module]:
    return [nn.Conv2d(3, 8, 3, padding=1), nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))]


def test_interleaved_rounds_pool_every_networks_samples_and_restore_threads():
    before = torch.get_num_threads()
    ticks = []
    t = measure_networks(_nets(), ON, warmup=1, repeats=6, rounds=3, seed=0, advance=lambda: ticks.append(1))
    assert [len(s) for s in t.samples] == [6, 6]
    assert t.sample_rounds == [[0, 0, 1, 1, 2, 2]] * 2 and t.sample_refs is None
    assert all(m > 0 for m in t.medians) and t.stats(1).n == 6
    assert len(ticks) == 2 + 2 * 3  # once per network made ready, once per network and round
    assert torch.get_num_threads() == before


def test_one_round_times_networks_one_at_a_time_as_the_caller_made_them_ready():
    """Runners (anything with samples/close) made ready by the caller: each is opened, timed and
    closed before the next one opens (what rtseg bench relies on for large models)."""
    events: list[str] = []

    class Ready:
        def __init__(self, name: str) -> None:
            self.name = name
            events.append(f"open {name}")

        def samples(self, warmup: int, repeats: int) -> list[float]:
            events.append(f"time {self.name} {warmup} {repeats}")
            return [1.0] * repeats

        def close(self) -> None:
            events.append(f"close {self.name}")

    t = measure_networks([lambda: Ready("a"), lambda: Ready("b")], warmup=3, repeats=5, rounds=1)
    assert events == ["open a", "time a 3 5", "close a", "open b", "time b 3 5", "close b"]
    assert t.medians == [1.0, 1.0] and t.sample_rounds == [[0] * 5] * 2


def test_an_onnx_file_is_timed_as_it_is_on_onnx_runtime(tmp_path):
    path = tmp_path / "net.onnx"
    export_onnx(_nets()[1].eval(), (torch.randn(1, 3, 16, 32),), path)
    ort = LatencyMeasure((16, 32), backend="onnxruntime", threads=1)
    t = measure_networks([path, str(path)], ort, warmup=1, repeats=4, rounds=2)
    assert [len(s) for s in t.samples] == [4, 4] and min(t.medians) > 0
    with pytest.raises(RtsegError, match="onnxruntime backend"):
        measure_networks([path], ON, warmup=0, repeats=1, rounds=1)


def test_archs_need_the_runtime_to_be_built():
    with pytest.raises(ValueError, match="runtime"):
        measure_networks(["baseline1"], warmup=0, repeats=1, rounds=1)


def test_latency_measure_times_an_arch_on_its_runtime():
    ms = LatencyMeasure((32, 64), backend="torch", threads=1, warmup=1, repeats=3)(rtseg.load_arch("baseline1"))
    assert ms > 0


def test_the_arch_record_loads_without_torch_or_the_spaces():
    code = ("import json, sys; import rtseg.arch as a; r = a.read_arch('baseline1'); "
            "print(json.dumps([r.space, sorted(m for m in sys.modules if m == 'torch' or m.startswith('rtseg.spaces'))]))")
    src = str(Path(rtseg.__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": src})
    assert json.loads(out.stdout) == ["ssr", []]


def test_spaces_import_nothing_above_them():
    """rtseg/spaces/ builds networks from ops; measuring, pricing, searching and running them sit above it."""
    above = ("rtseg.latency", "rtseg.backends", "rtseg.search", "rtseg.runtime", "rtseg.train", "rtseg.export", "rtseg.cli")
    found = []
    for path in sorted((Path(rtseg.__file__).parent / "spaces").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name}: {n}" for n in names if n.startswith(above)]
    assert found == []
