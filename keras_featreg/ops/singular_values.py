"""The mean singular value s_mu of an embedding batch, fast and exact.

`tf.linalg.svd(x, compute_uv=False)` is the reference formulation: its
gradient runs a second full SVD. Here the forward pass keeps what the
backward pass needs, so x is never decomposed twice:

- x (b x d) = U S V^T, k = min(b, d). If b >= d, G = x^T x = V S^2 V^T;
  otherwise G = x x^T = U S^2 U^T. Both are k x k.
- sum(s) = sum(sqrt(eig(G))), and d sum(s) / dx = U V^T, which is
  x P (b >= d) or P x (b < d) with P = W diag(1/s) W^T from the
  eigenvectors W of G: the custom gradient never runs a second SVD.

Routes (`ROUTES`), decided in the graph per batch:

0. float32 Gram, for float32 shapes far from square (see below), its
   `eigh` in float64 (TF's float32 eigensolver loses up to ~5e-6 of U V^T
   where this loses ~1e-6). If the batch is well conditioned (lambda_min
   >= RCOND_FLOAT32 * lambda_max, i.e. cond(x) <= 10) it serves both
   passes; the backward pass applies P to the float32 batch in float32.
1. float64 Gram: the Gram and its `eigh` in float64 serve both passes when
   lambda_min >= RCOND_FLOAT64_GRAM * lambda_max (cond(x) <= 1e5). Forming
   the Gram squares the condition number; in float64 it stays exact to
   float32 output precision up to there.
2. float64 Gram, deflated (`keras_featreg.ops.deflation`). Below that,
   the exact big eigenpairs are projected out of x (y = x (I - W W^T), in
   float64) and one more `eigh`, of y's Gram, resolves the small ones
   (cond(x) up to ~1e10); the gradient takes their directions from y.
   Singular values at the rounding floor are dropped: exactly
   rank-deficient batches get the minimum-norm subgradient U_r V_r^T.
3. float64 SVD, when even that cannot resolve the smallest pairs.
4. float32 Gram, deflated: route 2 with y's Gram in float32, for shapes
   far from square, when y is well conditioned (as route 0).
5. float32 SVD with vectors, serving both passes, for near-square float32
   batches with k >= SVD_MIN_SIZE whose U V^T is well conditioned (TF's
   float32 SVD outruns its float64 eigh there).
6. float32 SVD, deflated: route 5 on y, for collapsing near-square float32
   batches with k >= SVD_MIN_SIZE. y (computed in float64, then rounded to
   float32) holds the noise around the collapsed direction, whose spectrum
   is spread (cond(y) ~ 1e3 for an i.i.d. square batch) and which TF's
   float32 SVD decomposes about as fast as it decomposes x itself, where
   the reference decomposes x twice. Accepted when exactly the deflated
   direction is dropped and y's U V^T is well conditioned (as route 5);
   else route 2.

A collapsing batch (top eigenvalue >= 1 - DOMINANCE of trace(x^T x))
skips the first decomposition: its top direction comes from power
iteration, then one decomposition of y (route 4 or 6, else 2). Other batches
start at route 0 (float32, min(b, d) / max(b, d) <= ASPECT_FLOAT32 ~ 0.67:
by Marchenko-Pastur an i.i.d. batch then has cond(x) ~ (1 + sqrt(r)) /
(1 - sqrt(r)) <= 10), route 5 (near-square float32, k >= SVD_MIN_SIZE) or
route 1 (the rest, and float64 inputs).

XLA. Under `tf.function(jit_compile=True)` (Keras' default for `fit` on a
GPU) these routes cannot compile (their branches return decompositions of
different shapes): one route serves every batch there, see
`keras_featreg.ops.singular_values_xla`. Zero-size batches (an empty
replica) give s_mu = 0 with a zero gradient on both paths.

Scale. s_mu is positively homogeneous (s_mu(c x) = c s_mu(x)) and its
gradient is scale invariant, so x is divided by the power of two nearest
below max|x| first (exactly, and reading subnormal entries from their bits:
`keras_featreg.ops.scaling`): huge, tiny and subnormal inputs neither
overflow nor underflow the Gram, and their gradient is exact. (A value that
is itself subnormal in float32, s_mu < 1.2e-38, is flushed to zero.)
"""

import tensorflow as tf

from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.deflation import DEFLATION_SPLIT
from keras_featreg.ops.deflation import RCOND_FLOAT32
from keras_featreg.ops.deflation import RCOND_FLOAT64_GRAM
from keras_featreg.ops.deflation import deflated
from keras_featreg.ops.deflation import dominant_direction
from keras_featreg.ops.scaling import rescale
from keras_featreg.ops.singular_directions import route_directions
from keras_featreg.ops.singular_values_xla import singular_value_sum_xla
from keras_featreg.ops.spectral import branch
from keras_featreg.ops.spectral import far_from_square
from keras_featreg.ops.spectral import gram
from keras_featreg.ops.spectral import is_tall
from keras_featreg.ops.spectral import large
from keras_featreg.ops.spectral import oriented
from keras_featreg.ops.spectral import singular_from_eigenvalues
from keras_featreg.ops.xla import in_xla_context

_EPS_FLOAT64 = 2.220446049250313e-16
_EPS_FLOAT32 = 1.1920928955078125e-07
# Route 5 keeps the float32 SVD when the condition number of U V^T is at
# most 1 / RCOND_FLOAT32_SVD = 2e3 (its U V^T is then within ~5e-5 of
# float64: measured ~1e-8 to 2.5e-8 times that condition number).
RCOND_FLOAT32_SVD = 5e-4

# What `_decompose`'s `route` output indexes.
ROUTES = (
    "float32 Gram",
    "float64 Gram",
    "float64 Gram, deflated",
    "float64 SVD",
    "float32 Gram, deflated",
    "float32 SVD",
    "float32 SVD, deflated",
)


def _empty(dtype, rank):
    return tf.zeros((0,) * rank, dtype)


def _decompose(x: tf.Tensor):
    """Sum of singular values of `x` and what its gradient needs.

    `x` is a 2-D float32 or float64 matrix with entries of order 1 (see
    `rescale`). Returns a tuple `(total, scaled, tall, slots, route)`:
    `total` (float64) is the sum of singular values of `scaled` (x or x^T,
    whichever is tall); `route` (int32) indexes `ROUTES`; `slots` is
    `(values64, vectors64, *deflated64, left64, right64, left32,
    right32)`, where routes 0 and 1 fill `values64, vectors64` (eigenpairs
    of m^T m, the Gram in float32 resp. float64), routes 2, 4 and 6 the
    five `deflated64` (see `keras_featreg.ops.deflation.deflated`; route 6
    only the deflated pair), route 3 `left64, right64` (U and V^T) and
    routes 5 and 6 `left32, right32`; the other slots are empty.

    Three stages, each route traced once (a graph with every route costs
    its tracing once per `tf.function` trace): the shape's first attempt
    (route 0 or 4 far from square, 5 or 6 for large near-square float32
    batches), then, for a collapsing batch, route 2 with the power-iterated
    direction, then `two_decompositions` (route 1, else 2, else 3).
    """
    tall = is_tall(x)
    scaled = oriented(x, tall)
    m64 = tf.cast(scaled, tf.float64)
    empty = {
        "eigen64": (_empty(tf.float64, 1), _empty(tf.float64, 2)),
        "deflated64": (
            _empty(tf.float64, 1),
            _empty(tf.float64, 2),
            _empty(tf.float64, 1),
            _empty(tf.float64, 2),
            _empty(tf.float64, 2),
        ),
        "svd64": (_empty(tf.float64, 2), _empty(tf.float64, 2)),
        "svd32": (_empty(x.dtype, 2), _empty(x.dtype, 2)),
    }

    def outputs(total, route, accepted=True, **filled):
        slots = []
        for name in ("eigen64", "deflated64", "svd64", "svd32"):
            slots.extend(filled.get(name, empty[name]))
        total = tf.cast(total, tf.float64)
        route = tf.constant(route)
        return (total, *slots, route, tf.convert_to_tensor(accepted))

    def eigen(values, vectors, route, accepted):
        singular, _ = singular_from_eigenvalues(values, 0.0)
        kept = tf.where(values > 0, values, tf.zeros_like(values))
        total = tf.reduce_sum(singular)
        return outputs(total, route, accepted, eigen64=(kept, vectors))

    def deflated_try(big, route):
        total, pairs, resolved = deflated(m64, *big, route == 4)
        return outputs(total, route, resolved, deflated64=pairs)

    # A batch dominated by one direction (a collapsing one): that direction
    # by power iteration, then one decomposition of the rest.
    *top, dominant = dominant_direction(m64)

    def skip():
        return outputs(0.0, 1, False)

    def route0():
        # The float32 Gram, decomposed in float64 (TF's float32 eigh loses
        # up to ~5e-6 of U V^T; this one ~1e-6 at k = 2048). No eigenvalue
        # is near zero when accepted, so none is dropped; an all-zero batch
        # (every eigenvalue 0) gives 0.
        values, vectors = tf.linalg.eigh(tf.cast(gram(scaled), tf.float64))
        well_conditioned = values[0] >= RCOND_FLOAT32 * values[-1]
        return eigen(values, vectors, 0, well_conditioned)

    def route5():
        # One float32 SVD with vectors serves both passes when U V^T is
        # well conditioned (s_max / s_min <= 2e3, or 2 s_max / (s_k-1 +
        # s_k) for a square batch): U V^T within ~5e-5 of float64.
        singular, left, right = tf.linalg.svd(scaled)
        return _svd_outputs(singular, left, right, 0, outputs, 5)

    def route6():
        # y = m (I - v v^T) in float64, one float32 SVD of y. The deflated
        # direction leaves only rounding in y: exactly one singular value
        # below the floor, and U V^T of the rest well conditioned.
        big_values, big_vectors = top
        residual = m64 - tf.matmul(
            tf.matmul(m64, big_vectors), big_vectors, transpose_b=True
        )
        singular, left, right = tf.linalg.svd(tf.cast(residual, x.dtype))
        return _svd_outputs(
            singular, left, right, tf.size(big_values), outputs, 6, top
        )

    def first_attempt():
        if x.dtype == tf.float64:
            return skip()
        return branch(
            far_from_square(x),
            lambda: tf.cond(dominant, lambda: deflated_try(top, 4), route0),
            lambda: branch(
                large(x), lambda: tf.cond(dominant, route6, route5), skip
            ),
        )

    def two_decompositions():
        values, vectors = tf.linalg.eigh(gram(m64))
        # An all-zero batch (every eigenvalue 0) passes with s_mu = 0.
        accurate = values[0] >= RCOND_FLOAT64_GRAM * values[-1]

        def deflate():
            # Its exact big pairs deflated, else one float64 SVD.
            big = values >= DEFLATION_SPLIT * values[-1]
            big_values = tf.boolean_mask(values, big)
            big_vectors = tf.boolean_mask(vectors, big, axis=1)
            result = deflated_try((big_values, big_vectors), 2)
            return tf.cond(result[-1], lambda: result, svd64)

        return tf.cond(
            accurate, lambda: eigen(values, vectors, 1, True), deflate
        )

    def svd64():
        singular, left, right = tf.linalg.svd(m64)
        size = tf.cast(tf.reduce_max(tf.shape(m64)), tf.float64)
        keep = singular > size * _EPS_FLOAT64 * tf.reduce_max(singular)
        total = tf.reduce_sum(tf.where(keep, singular, tf.zeros_like(singular)))
        left = left * tf.cast(keep, tf.float64)
        return outputs(total, 3, svd64=(left, tf.transpose(right)))

    result = first_attempt()
    result = tf.cond(
        ~result[-1] & dominant, lambda: deflated_try(top, 2), lambda: result
    )
    result = tf.cond(result[-1], lambda: result, two_decompositions)
    total, *slots, route, _ = result
    return total, scaled, tall, tuple(slots), route


def _svd_outputs(singular, left, right, deflated_count, outputs, route, top=()):
    """Routes 5 and 6: a float32 SVD's outputs and whether it is accepted.

    Singular values below max(b, d) eps s_max are dropped; the SVD is
    accepted when exactly `deflated_count` are (none for route 5, the
    deflated direction for route 6) and U V^T of the kept pairs is well
    conditioned: the two smallest kept (a square batch's last singular
    value alone says little) at least RCOND_FLOAT32_SVD s_max.
    """
    largest = singular[0]  # sorted in decreasing order
    rows, cols = tf.shape(left)[0], tf.shape(right)[0]
    size = tf.cast(tf.maximum(rows, cols), singular.dtype)
    keep = singular > size * _EPS_FLOAT32 * largest
    dropped = tf.reduce_sum(tf.cast(~keep, tf.int32))
    kept_count = tf.size(singular) - deflated_count
    square = tf.equal(rows, cols)
    bottom = tf.where(
        square,
        tf.reduce_mean(singular[kept_count - 2 : kept_count]),
        singular[kept_count - 1],
    )
    accepted = tf.equal(dropped, deflated_count) & (
        bottom >= RCOND_FLOAT32_SVD * largest
    )
    kept = tf.where(keep, singular, tf.zeros_like(singular))
    total = tf.reduce_sum(tf.cast(kept, tf.float64))
    filled = {"svd32": (left * tf.cast(keep, left.dtype), tf.transpose(right))}
    if top:
        big_values, big_vectors = top
        total += tf.reduce_sum(tf.sqrt(big_values))
        empty1, empty2 = (
            tf.zeros((0,), tf.float64),
            tf.zeros((0, 0), tf.float64),
        )
        filled["deflated64"] = (big_values, big_vectors, empty1, empty2, empty2)
    return outputs(total, route, accepted, **filled)


@tf.custom_gradient
def _singular_value_sum(x: tf.Tensor):
    """Sum of singular values of a 2-D float32/float64 matrix, U V^T grad."""
    unit, scale = rescale(x)
    total, scaled, tall, slots, route = _decompose(unit)

    def grad(upstream):
        uv = route_directions(route, x, scaled, slots)
        uv = oriented(uv, tall)  # back to x's orientation
        uv = tf.ensure_shape(uv, x.shape)
        return tf.cast(upstream, x.dtype) * uv

    return tf.cast(total, x.dtype) * scale, grad


def singular_value_sum(x: tf.Tensor) -> tf.Tensor:
    """Sum of singular values of a 2-D float32/float64 matrix (U V^T grad).

    Takes the XLA route while tracing for XLA, the four routes otherwise.
    Inside a tf.distribute replica, where a replica can receive no rows
    (the last partial batch), a matrix with no rows gives 0.
    """
    fn = singular_value_sum_xla if in_xla_context() else _singular_value_sum
    if x.shape[0] is not None or not _in_replica():
        return fn(x)
    empty = tf.equal(tf.shape(x)[0], 0)
    return tf.cond(
        empty, lambda: tf.zeros((), x.dtype) * tf.reduce_sum(x), lambda: fn(x)
    )


def _in_replica() -> bool:
    context = tf.distribute.get_replica_context()
    return context is not None and context.num_replicas_in_sync > 1


def mean_singular_value(x) -> tf.Tensor:
    """Mean singular value s_mu of a batch of embeddings.

    ```python
    s_mu = sum(singular_values(x)) / min(batch_size, features)
    ```

    The mean runs over the min(b, d) singular values a b x d matrix has, so
    it is defined for b < d as well (SVMax paper, appendix B.2). No
    normalization happens inside: L2-normalize the rows first for the bounds
    of `svmax_bounds` to apply.

    Computed from one eigendecomposition of the smaller Gram matrix, chosen
    in the graph per batch (float32 when the batch is well conditioned,
    float64 otherwise, deflated once for nearly collapsed batches), with a
    custom gradient U V^T / k that reuses it and never runs a second
    decomposition. Value within ~1e-6 of float64 and exact to float32
    precision on collapsed batches too; finite gradients on rank-deficient
    and all-zero batches (the minimum-norm subgradient). See the module
    docstring for the routes.

    Under XLA (`jit_compile=True`, Keras' default on a GPU) one float64
    Gram route compiles for any batch size, static or not. A batch with no
    rows inside a tf.distribute replica (an empty replica) has s_mu = 0 and
    a zero gradient.

    Args:
        x: Float tensor `(batch_size, features)`; rank > 2 is flattened over
            all but the batch axis. float16/bfloat16 compute in float32.

    Returns:
        Scalar s_mu, float64 for float64 input and float32 otherwise.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> x = keras.ops.eye(3)
    >>> float(keras_featreg.ops.mean_singular_value(x))
    1.0

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 1.
    """
    x = as_matrix(x, "x")
    k = tf.cast(tf.minimum(tf.shape(x)[0], tf.shape(x)[1]), x.dtype)
    return tf.math.divide_no_nan(singular_value_sum(x), k)


def reference_mean_singular_value(x) -> tf.Tensor:
    """The reference formulation: `mean(tf.linalg.svd(x, compute_uv=False))`.

    What the SVMax authors' code computes; its gradient runs a second SVD.
    Kept for benchmarks and tests.
    """
    x = as_matrix(x, "x")
    return tf.reduce_mean(tf.linalg.svd(x, compute_uv=False))
