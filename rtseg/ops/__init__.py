"""Candidate operators. One operator is one small class, built by name from an :class:`OpSpec`.

Importing this package registers every operator; the supernets, the decoded networks, the profiler
and the FLOPs counter all build modules through :func:`build_op`.
"""

from rtseg.ops.base import Op, OpSignature, OpSpec, build_op, count_by_key, op_class, register_op, registered_ops
from rtseg.ops import common as _common  # noqa: F401  (registers classifier, resize, identity, aggregation)
from rtseg.ops import erfnet as _erfnet  # noqa: F401  (registers the ERFNet family: db, nb1d and ERFNet's own blocks)
from rtseg.ops import cas_ops as _cas_ops, conv as _conv, dcnas_ops as _dcnas_ops, mbv3 as _mbv3  # noqa: F401,E501  (CAS, DCNAS operators)
from rtseg.ops import bilateral as _bilateral, stdc as _stdc  # noqa: F401  (the STDC and DDRNet peers' operators)

__all__ = ["Op", "OpSignature", "OpSpec", "build_op", "count_by_key", "op_class", "register_op", "registered_ops"]
