"""The mean singular value s_mu of an embedding batch, fast and exact.

`tf.linalg.svd(x, compute_uv=False)` is the reference formulation: its
gradient runs a second full SVD. Here the forward pass keeps what the
backward pass needs, so x is never decomposed twice:

- x (b x d) = U S V^T, k = min(b, d). If b >= d, G = x^T x = V S^2 V^T;
  otherwise G = x x^T = U S^2 U^T. Both are k x k.
- sum(s) = sum(sqrt(eig(G))), and d sum(s) / dx = U V^T, which is
  x P (b >= d) or P x (b < d) with P = W diag(1/s) W^T from the
  eigenvectors W of G: the custom gradient never runs a second SVD.

Routes (`ROUTES`, in this order), decided in the graph per batch:

0. float32 Gram, for shapes far from square (see below). The float32
   Gram's eigenvalues are computed in float64 (`eigvalsh`, values only: TF's
   float32 eigensolver loses ~1e-5 of relative accuracy at k = 2048). If
   the batch is well conditioned (lambda_min >= RCOND_FLOAT32 * lambda_max,
   i.e. cond(x) <= 10) they give the value, and only the backward pass runs
   a float32 `eigh` of the same Gram for P: a forward-only call (a metric)
   never computes eigenvectors.
1. float32 SVD, for near-square shapes: one `tf.linalg.svd` with vectors
   serves both passes when U V^T is well conditioned (s_max / s_min <= 2e3,
   or 2 s_max / (s_{k-1} + s_k) <= 2e3 for a square batch; see
   RCOND_FLOAT32_SVD): value within ~1e-6, U V^T within ~5e-5 of float64.
   At a square shape this costs what the reference's backward SVD alone
   costs.
2. float64 Gram. Otherwise the Gram and its `eigh` are computed in float64
   and serve both passes. Forming the Gram squares the condition number; in
   float64 this route stays exact to float32 output precision up to
   cond(x) = 1e5.
3. float64 SVD. When even the float64 Gram cannot resolve the smallest
   singular vectors (cond(x) > 1e5, e.g. a nearly collapsed batch), one
   float64 SVD with vectors serves both passes.

Which of routes 0 and 1 is tried first depends on the static shape: a b x d
batch of i.i.d. entries has cond(x) ~ (1 + sqrt(r)) / (1 - sqrt(r)) with
r = k / max(b, d) (Marchenko-Pastur), so for r > ASPECT_FLOAT32 (~0.67) even
a well spread batch fails route 0's test, and the float32 SVD is tried
instead (its condition estimate also sends cond(x) > 1e5 straight to route
3). float64 inputs start at route 2.

Singular values at the rounding-noise floor (rank-deficient batches) count
as exact zeros (for float64 inputs, the float64 SVD decides which are):
their singular pairs are dropped, which gives the minimum-norm subgradient
U_r V_r^T and keeps the gradient finite on collapsed, rank-1 and all-zero
batches.

XLA. Under `tf.function(jit_compile=True)` (Keras' default for `fit` on a
GPU) the routes above cannot compile: their branches return decompositions
of different shapes, and XLA's own SVD is ~250x slower than TensorFlow's
on a CPU. There one route serves every batch: the float64 Gram of the tall
orientation, decomposed by XLA's Jacobi eigensolver with a tight
tolerance (`keras_featreg.ops.xla`), whose forward pass returns s_mu and
U V^T (the gradient) together, shaped like x, so that a batch size known
only at run time (`None`) compiles too. Values agree with the routes
above to ~1e-9 (relative) and U V^T to ~1e-8, nearly collapsed batches
included; for cond(x) > ~1e5 (singular values of ~1e-6 * s_max that are
not rounding noise) U V^T is accurate to ~1e-3. Zero-size batches (an
empty replica) give s_mu = 0 with a zero gradient on both paths. XLA drops
the NaN/Inf input assertion (`as_matrix`): there a non-finite batch gives a
NaN s_mu and gradient instead of an error.

Scale. s_mu is positively homogeneous (s_mu(c x) = c s_mu(x)) and its
gradient is scale invariant, so x is divided by the power of two nearest
below max|x| first (exactly, without rounding): huge or tiny inputs neither
overflow nor underflow the Gram.
"""

import tensorflow as tf

from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.batch import power_of_two_scale
from keras_featreg.ops.xla import in_xla_context
from keras_featreg.ops.xla import self_adjoint_eig

# Route 0 keeps the float32 Gram when lambda_min / lambda_max is at least
# this (cond(x) <= 10); measured in benchmarks/bench_ops.py.
RCOND_FLOAT32 = 1e-2
# Shapes with min(b, d) / max(b, d) above this try the float32 SVD instead:
# an i.i.d. batch of that shape already has cond(x) > RCOND_FLOAT32 ** -0.5.
ASPECT_FLOAT32 = (
    (RCOND_FLOAT32**-0.5 - 1.0) / (RCOND_FLOAT32**-0.5 + 1.0)
) ** 2
# Route 1 keeps the float32 SVD when the condition number of U V^T is at
# most 1 / RCOND_FLOAT32_SVD = 2e3: s_max / s_min for b != d and
# 2 s_max / (s_{k-1} + s_k) for b = d. Its U V^T is then within ~5e-5 of
# float64 (measured: ~1e-8 to 2.5e-8 times that condition number).
RCOND_FLOAT32_SVD = 5e-4
# Eigenvalues of the float64 Gram below this fraction of the largest, times
# k, are rounding noise: they are treated as zero.
_NOISE_FLOAT64 = 1e-15
# Below this lambda_min / lambda_max (cond(x) > 1e5) the float64 Gram's
# eigenvectors lose more than ~1e-4 of accuracy: take a float64 SVD instead.
RCOND_FLOAT64_GRAM = 1e-10
# Tolerance of XLA's Jacobi eigensolver on the float64 Gram (the XLA route).
_EPSILON_XLA = 1e-12
_EPS_FLOAT32 = 1.1920928955078125e-07
_EPS_FLOAT64 = 2.220446049250313e-16

# What `_decompose`'s `route` output indexes.
ROUTES = ("float32 Gram", "float32 SVD", "float64 Gram", "float64 SVD")


def _branch(predicate, true_fn, false_fn):
    """`tf.cond`, or a plain `if` when the predicate is known while tracing."""
    if isinstance(predicate, bool):
        return true_fn() if predicate else false_fn()
    return tf.cond(predicate, true_fn, false_fn)


def _is_tall(x: tf.Tensor):
    """b >= d: a Python bool for static shapes, a boolean tensor otherwise."""
    rows, cols = x.shape
    if rows is not None and cols is not None:
        return rows >= cols
    return tf.shape(x)[0] >= tf.shape(x)[1]


def _far_from_square(x: tf.Tensor):
    """k / max(b, d) <= ASPECT_FLOAT32: route 0 can pass for this shape."""
    rows, cols = x.shape
    if rows is not None and cols is not None:
        return min(rows, cols) <= ASPECT_FLOAT32 * max(rows, cols)
    shape = tf.cast(tf.shape(x), tf.float32)
    return tf.reduce_min(shape) <= ASPECT_FLOAT32 * tf.reduce_max(shape)


def _oriented(x: tf.Tensor, tall):
    """x if b >= d, else x^T: the routes only ever see tall matrices.

    With a dynamic shape this is one `tf.cond` whose output has unknown
    dimensions. Branching later on `tall` instead (x^T x vs x x^T) would put
    both orientations of one tensor into the graph, and Grappler's symbolic
    shape inference then unifies b with d across the branch not taken.
    """
    return _branch(tall, lambda: x, lambda: tf.transpose(x))


def _gram(m: tf.Tensor) -> tf.Tensor:
    """m^T m, the k x k Gram matrix of a tall matrix m."""
    return tf.matmul(m, m, transpose_a=True)


def _singular_from_eigenvalues(eigenvalues, threshold):
    """(sqrt(lambda), 1 / sqrt(lambda)) with eigenvalues <= threshold as 0."""
    keep = eigenvalues > threshold
    safe = tf.where(keep, eigenvalues, tf.ones_like(eigenvalues))
    singular = tf.where(keep, tf.sqrt(safe), tf.zeros_like(safe))
    inverse = tf.where(keep, tf.math.rsqrt(safe), tf.zeros_like(safe))
    return singular, inverse


def _svd(x: tf.Tensor, eps: float):
    """SVD with singular values below max(b, d) * eps * s_max dropped.

    Returns (sum of kept singular values, U with dropped columns zeroed,
    V^T, s_max / s_min over all singular values).
    """
    singular, left, right = tf.linalg.svd(x)
    largest = tf.reduce_max(singular)
    size = tf.cast(tf.reduce_max(tf.shape(x)), x.dtype)
    keep = singular > size * eps * largest
    kept = tf.where(keep, singular, tf.zeros_like(singular))
    left = left * tf.cast(keep, x.dtype)
    return tf.reduce_sum(kept), left, tf.transpose(right), singular


def _empty(dtype, rank):
    return tf.zeros((0,) * rank, dtype)


def _decompose(x: tf.Tensor):
    """Sum of singular values of `x / scale` and what its gradient needs.

    `x` is a 2-D float32 or float64 matrix. Returns a tuple
    `(total, scale, tall, slots, route)`: `total` (float64) is the sum of
    singular values of `x / scale`; `route` (int32) indexes `ROUTES`; `slots`
    is `(gram32, left32, right32, values64, vectors64, left64, right64)`,
    where route 0 fills `gram32` (its gradient decomposes it), route 1
    `left32, right32` (U and V^T), route 2 `values64, vectors64` and route 3
    `left64, right64`; the other slots are empty. All of them describe x
    or x^T, whichever is tall (`tall` says which).
    """
    scale = power_of_two_scale(x)
    tall = _is_tall(x)
    scaled = _oriented(x, tall) / scale
    empty = {
        "gram32": (_empty(x.dtype, 2),),
        "svd32": (_empty(x.dtype, 2), _empty(x.dtype, 2)),
        "gram64": (_empty(tf.float64, 1), _empty(tf.float64, 2)),
        "svd64": (_empty(tf.float64, 2), _empty(tf.float64, 2)),
    }

    def outputs(total, route, **filled):
        slots = []
        for name in ("gram32", "svd32", "gram64", "svd64"):
            slots.extend(filled.get(name, empty[name]))
        return (tf.cast(total, tf.float64), *slots, tf.constant(route))

    def svd64():
        total, left, right, _ = _svd(tf.cast(scaled, tf.float64), _EPS_FLOAT64)
        return outputs(total, 3, svd64=(left, right))

    def float64_routes():
        scaled64 = tf.cast(scaled, tf.float64)
        values, vectors = tf.linalg.eigh(_gram(scaled64))
        size = tf.cast(tf.size(values), tf.float64)
        noise = _NOISE_FLOAT64 * size * values[-1]
        kept = values > noise
        if x.dtype == tf.float64:
            # float64 output precision: dropping noise-floor eigenvalues
            # would lose singular values up to ~1e-7 * s_max.
            smallest_kept = values[0]
        else:
            smallest_kept = tf.reduce_min(tf.where(kept, values, values[-1]))
        accurate = smallest_kept >= RCOND_FLOAT64_GRAM * values[-1]

        def gram64():
            singular, _ = _singular_from_eigenvalues(values, noise)
            # Eigenvalues at the noise floor are stored as exact zeros, so
            # that the gradient drops their singular pairs too.
            values_kept = tf.where(kept, values, tf.zeros_like(values))
            return outputs(
                tf.reduce_sum(singular), 2, gram64=(values_kept, vectors)
            )

        return tf.cond(accurate, gram64, svd64)

    def float32_gram():
        gram = _gram(scaled)
        values = tf.linalg.eigvalsh(tf.cast(gram, tf.float64))
        well_conditioned = values[0] >= RCOND_FLOAT32 * values[-1]

        def route0():
            # No eigenvalue is near zero here, so none is dropped; an
            # all-zero batch (every eigenvalue 0) gives 0.
            singular, _ = _singular_from_eigenvalues(values, 0.0)
            return outputs(tf.reduce_sum(singular), 0, gram32=(gram,))

        return tf.cond(well_conditioned, route0, float64_routes)

    def float32_svd():
        total, left, right, singular = _svd(scaled, _EPS_FLOAT32)
        largest = singular[0]  # sorted in decreasing order
        smallest = singular[-1]
        # U V^T of a square matrix is sensitive to 1 / (s_i + s_j), of a
        # rectangular one to 1 / s_i (the polar factor's condition number).
        square = tf.equal(tf.shape(x)[0], tf.shape(x)[1])
        bottom = tf.where(square, tf.reduce_mean(singular[-2:]), smallest)

        def route1():
            return outputs(total, 1, svd32=(left, right))

        def fallback():
            # The float32 estimate of cond(x) is good to a few % at 1e5.
            gram_can_resolve = smallest >= 1e-5 * largest
            return tf.cond(gram_can_resolve, float64_routes, svd64)

        # An all-zero batch (s_max = 0) passes: every pair is dropped.
        return tf.cond(bottom >= RCOND_FLOAT32_SVD * largest, route1, fallback)

    if x.dtype == tf.float64:
        result = float64_routes()
    else:
        result = _branch(_far_from_square(x), float32_gram, float32_svd)
    total, *slots, route = result
    return total, scale, tall, tuple(slots), route


def _direction(scaled, values, vectors):
    """U V^T = m P of a tall m, P = W diag(1/s) W^T.

    Eigenvalues <= 0 (dropped or all-zero) get 1/s = 0.
    """
    _, inverse = _singular_from_eigenvalues(values, 0.0)
    projector = tf.matmul(vectors * inverse, vectors, transpose_b=True)
    return tf.matmul(scaled, projector)


@tf.custom_gradient
def _singular_value_sum(x: tf.Tensor):
    """Sum of singular values of a 2-D float32/float64 matrix, U V^T grad."""
    total, scale, tall, slots, route = _decompose(x)
    gram32, left32, right32, values64, vectors64, left64, right64 = slots

    def grad(upstream):
        scaled = _oriented(x, tall) / scale

        def gram_float32():
            values, vectors = tf.linalg.eigh(gram32)
            return _direction(scaled, values, vectors)

        def svd_float32():
            return tf.matmul(left32, right32)

        def gram_float64():
            direction = _direction(
                tf.cast(scaled, tf.float64), values64, vectors64
            )
            return tf.cast(direction, x.dtype)

        def svd_float64():
            return tf.cast(tf.matmul(left64, right64), x.dtype)

        branches = [gram_float32, svd_float32, gram_float64, svd_float64]
        # Routes that cannot fire have statically empty slots: stand-ins.
        if x.dtype == tf.float64:
            branches[:2] = [gram_float64, gram_float64]
        elif _far_from_square(x) is True:
            branches[1] = gram_float32
        elif _far_from_square(x) is False:
            branches[0] = svd_float32
        direction = tf.switch_case(route, branches)
        direction = _oriented(direction, tall)  # back to x's orientation
        direction = tf.ensure_shape(direction, x.shape)
        return tf.cast(upstream, x.dtype) * direction

    return tf.cast(total, x.dtype) * scale, grad


def _xla_tall(scaled: tf.Tensor):
    """(sum of singular values, U V^T) of a tall matrix, for XLA.

    One float64 Gram, one Jacobi eigendecomposition: fixed output shapes
    (a scalar and `scaled`'s shape), whatever the route's inputs hold.
    """
    scaled64 = tf.cast(scaled, tf.float64)
    values, vectors = self_adjoint_eig(_gram(scaled64), _EPSILON_XLA)
    size = tf.cast(tf.size(values), tf.float64)
    largest = tf.reduce_max(values)
    noise = _NOISE_FLOAT64 * size * largest
    singular, _ = _singular_from_eigenvalues(values, noise)
    values_kept = tf.where(values > noise, values, tf.zeros_like(values))
    direction = _direction(scaled64, values_kept, vectors)
    return tf.reduce_sum(singular), tf.cast(direction, scaled.dtype)


@tf.custom_gradient
def _singular_value_sum_xla(x: tf.Tensor):
    """`_singular_value_sum` for XLA: the float64 Gram route only."""
    scale = power_of_two_scale(x)
    scaled = x / scale

    def wide():
        total, direction = _xla_tall(tf.transpose(scaled))
        return total, tf.transpose(direction)

    total, direction = _branch(_is_tall(x), lambda: _xla_tall(scaled), wide)
    direction = tf.ensure_shape(direction, x.shape)
    # XLA compiles the input check away and its eigensolver turns NaN/Inf
    # into finite numbers: make such a batch's value and gradient NaN.
    finite = tf.reduce_all(tf.math.is_finite(x))
    nan = tf.constant(float("nan"), tf.float64)
    total = tf.where(finite, total, nan)
    direction = tf.where(finite, direction, tf.cast(nan, x.dtype))

    def grad(upstream):
        return tf.cast(upstream, x.dtype) * direction

    return tf.cast(total, x.dtype) * scale, grad


def singular_value_sum(x: tf.Tensor) -> tf.Tensor:
    """Sum of singular values of a 2-D float32/float64 matrix (U V^T grad).

    Takes the XLA route while tracing for XLA, the four routes otherwise.
    Inside a tf.distribute replica, where a replica can receive no rows
    (the last partial batch), a matrix with no rows gives 0.
    """
    fn = _singular_value_sum_xla if in_xla_context() else _singular_value_sum
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

    Computed from one decomposition, chosen in the graph per batch: the
    eigendecomposition of the smaller Gram matrix (float32 when the batch
    is well conditioned, float64 otherwise) or an SVD (float32 for
    near-square shapes, float64 when cond(x) > 1e5), with a custom gradient
    U V^T / k that reuses it and never runs a second SVD. Value within
    ~1e-6 of float64 and exact to float32 precision on collapsed batches
    too; finite gradients on rank-deficient and all-zero batches (the
    minimum-norm subgradient). See the module docstring for the routes.

    Under XLA (`jit_compile=True`, Keras' default on a GPU) one float64
    Gram route compiles for any batch size, static or not (module
    docstring). A batch with no rows inside a tf.distribute replica (an
    empty replica) has s_mu = 0 and a zero gradient.

    Args:
        x: Float tensor `(batch_size, features)`; rank > 2 is flattened over
            all but the batch axis. float16/bfloat16 compute in float32.

    Returns:
        Scalar s_mu, float64 for float64 input and float32 otherwise.

    Example:

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
