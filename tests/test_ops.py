import itertools

import pytest
import torch

from rtseg.errors import RtsegError
from rtseg.ops import OpSignature, OpSpec, build_op, op_class


@pytest.mark.parametrize("dilation,spatial", list(itertools.product([1, 2, 4, 8, 16], [1, 2])))
@pytest.mark.parametrize("c3x1,c1x3", [(64, 64), (32, 64), (64, 32), (44, 60)])
def test_nb1d_output_shape(dilation, spatial, c3x1, c1x3):
    op = build_op(OpSpec.make("nb1d", 64, 64, 1, dilation=dilation, spatial=spatial, c3x1=c3x1, c1x3=c1x3))
    x = torch.randn(2, 64, 16, 32)
    assert op(x).shape == x.shape


def test_nb1d_narrow_equals_masked_full_width():
    full = build_op(OpSpec.make("nb1d", 32, 32, 1, dilation=2, spatial=1, c3x1=32, c1x3=32)).eval()
    narrow = build_op(OpSpec.make("nb1d", 32, 32, 1, dilation=2, spatial=1, c3x1=20, c1x3=24)).eval()
    sd = full.state_dict()
    nsd = {k: v for k, v in sd.items()}
    nsd["conv3x1.weight"] = sd["conv3x1.weight"][:20]
    nsd["conv1x3.weight"] = sd["conv1x3.weight"][:24, :20]
    for bn, c in (("bn1", 20), ("bn2", 24)):
        for s in ("weight", "bias", "running_mean", "running_var"):
            nsd[f"{bn}.{s}"] = sd[f"{bn}.{s}"][:c]
    narrow.load_state_dict(nsd)
    m1 = torch.zeros(32); m1[:20] = 1
    m2 = torch.zeros(32); m2[:24] = 1
    x = torch.randn(1, 32, 8, 8)
    torch.testing.assert_close(full(x, m1, m2), narrow(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("c_in,c_out", [(3, 16), (16, 64), (64, 128), (64, 32)])
def test_downsampler_halves_resolution(c_in, c_out):
    op = build_op(OpSpec.make("db", c_in, c_out, 2))
    assert op(torch.randn(1, c_in, 32, 64)).shape == (1, c_out, 16, 32)


def test_aggregation_head_shapes():
    sig = OpSpec.make("aggregation", 16, 19, 1, c4=64, c8=128, mid=64).at(64, 128)
    op = build_op(sig.spec)
    ins = op_class("aggregation").example_inputs(sig, batch=2)
    assert [tuple(t.shape) for t in ins] == [(2, 16, 64, 128), (2, 64, 32, 64), (2, 128, 16, 32)]
    assert op(*ins).shape == (2, 19, 32, 64)


def test_classifier_and_resize():
    c = build_op(OpSpec.make("classifier", 128, 19))
    r = build_op(OpSpec.make("resize", 19, 19, scale=8))
    y = r(c(torch.randn(1, 128, 8, 16)))
    assert y.shape == (1, 19, 64, 128)


def test_signature_key_is_canonical_and_round_trips():
    a = OpSpec.make("nb1d", 64, 64, 1, spatial=2, dilation=4, c3x1=60, c1x3=64).at(32, 64)
    b = OpSpec.make("nb1d", 64, 64, 1, c1x3=64, c3x1=60, dilation=4, spatial=2).at(32, 64)
    assert a == b and a.key == b.key and hash(a) == hash(b)
    assert OpSignature.from_key(a.key) == a
    assert '"h":32' in a.key and " " not in a.key


def test_unknown_operator_is_a_clear_error():
    with pytest.raises(RtsegError, match="unknown operator 'conv9x9'"):
        build_op(OpSpec.make("conv9x9", 3, 3))


def test_out_of_range_width_is_rejected():
    with pytest.raises(RtsegError, match="cannot build operator 'nb1d'"):
        build_op(OpSpec.make("nb1d", 64, 64, 1, c3x1=80))
