"""Two TensorFlow hooks for XLA, kept in one place (both are not public API).

- `in_xla_context()`: whether the graph being traced will be compiled by
  XLA (`tf.function(jit_compile=True)`, which is what Keras'
  `jit_compile="auto"` gives `fit` on a GPU). TensorFlow has no public API
  for this; `tensorflow.python.ops.control_flow_util` answers it.
- `self_adjoint_eig(a, epsilon)`: XLA's Jacobi eigensolver with a chosen
  tolerance. `tf.linalg.eigh` compiles to the same solver with a fixed
  tolerance of 1e-6 relative to the matrix norm, which resolves the small
  eigenvalues of a nearly collapsed batch's Gram matrix to only ~1e-4
  (measured: s_mu off by 1.7e-4, U V^T by 3.6e-2, in float64); with a tight
  tolerance the float64 solver is exact to ~1e-9.

If a TensorFlow release moves either hook, `in_xla_context()` answers True
(the XLA-safe route works everywhere, only slower outside XLA) and
`self_adjoint_eig` falls back to `tf.linalg.eigh`. tests/ops/test_xla.py
checks that both hooks are the real ones on the tested TensorFlow.
"""

import tensorflow as tf

try:  # pragma: no cover - depends on the TensorFlow release
    from tensorflow.python.ops.control_flow_util import (
        GraphOrParentsInXlaContext as _graph_in_xla_context,
    )
except ImportError:  # pragma: no cover
    _graph_in_xla_context = None

try:  # pragma: no cover - depends on the TensorFlow release
    from tensorflow.compiler.tf2xla.python.xla import (
        self_adjoint_eig as _xla_self_adjoint_eig,
    )
except ImportError:  # pragma: no cover
    _xla_self_adjoint_eig = None

HOOKS_AVAILABLE = (
    _graph_in_xla_context is not None and _xla_self_adjoint_eig is not None
)
# Jacobi sweeps at most; a float64 Gram of k <= 2048 converges in < 20.
_MAX_SWEEPS = 100


def in_xla_context() -> bool:
    """True while tracing a function that XLA will compile.

    False when executing eagerly. True when the hook is unavailable (the
    caller then takes its XLA-safe route, correct everywhere).
    """
    if tf.executing_eagerly():
        return False
    if _graph_in_xla_context is None:  # pragma: no cover
        return True
    return bool(_graph_in_xla_context(tf.compat.v1.get_default_graph()))


def self_adjoint_eig(a: tf.Tensor, epsilon: float):
    """`(eigenvalues, eigenvectors)` of symmetric `a`, ascending, under XLA.

    Only valid inside an XLA-compiled function (the op has no kernel
    outside XLA).
    """
    if _xla_self_adjoint_eig is None:  # pragma: no cover
        return tf.linalg.eigh(a)
    values, vectors = _xla_self_adjoint_eig(a, True, _MAX_SWEEPS, epsilon)
    # Jacobi leaves the eigenvalues unsorted: sort ascending, as eigh does.
    order = tf.argsort(values)
    return tf.gather(values, order), tf.gather(vectors, order, axis=1)
