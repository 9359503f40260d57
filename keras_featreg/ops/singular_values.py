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
from keras_featreg.ops.singular_values_xla import singular_value_sum_xla
from keras_featreg.ops.spectral import branch
from keras_featreg.ops.spectral import direction
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
    `(values64, vectors64, *deflated64, left64, right64)`, where routes 0
    and 1 fill `values64, vectors64` (eigenpairs of m^T m, the Gram in
    float32 resp. float64), routes 2 and 4 the five `deflated64` (see
    `keras_featreg.ops.deflation.deflated`) and route 3 `left64, right64`
    (U and V^T); the other slots are empty.
    """
    tall = is_tall(x)
    scaled = oriented(x, tall)
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

    def outputs(total, route, **filled):
        slots = []
        for name in ("eigen64", "deflated64", "svd64", "svd32"):
            slots.extend(filled.get(name, empty[name]))
        return (tf.cast(total, tf.float64), *slots, tf.constant(route))

    def svd64():
        m64 = tf.cast(scaled, tf.float64)
        singular, left, right = tf.linalg.svd(m64)
        size = tf.cast(tf.reduce_max(tf.shape(m64)), tf.float64)
        keep = singular > size * _EPS_FLOAT64 * tf.reduce_max(singular)
        total = tf.reduce_sum(tf.where(keep, singular, tf.zeros_like(singular)))
        left = left * tf.cast(keep, tf.float64)
        return outputs(total, 3, svd64=(left, tf.transpose(right)))

    def eigen(values, vectors, route):
        singular, _ = singular_from_eigenvalues(values, 0.0)
        kept = tf.where(values > 0, values, tf.zeros_like(values))
        return outputs(tf.reduce_sum(singular), route, eigen64=(kept, vectors))

    def deflated_route(m64, top, route, otherwise):
        total, pairs, resolved = deflated(m64, *top, route == 4)
        return tf.cond(
            resolved, lambda: outputs(total, route, deflated64=pairs), otherwise
        )

    def two_decompositions(m64):
        values, vectors = tf.linalg.eigh(gram(m64))
        # An all-zero batch (every eigenvalue 0) passes with s_mu = 0.
        accurate = values[0] >= RCOND_FLOAT64_GRAM * values[-1]

        def deflate():
            big = values >= DEFLATION_SPLIT * values[-1]
            big_values = tf.boolean_mask(values, big)
            big_vectors = tf.boolean_mask(vectors, big, axis=1)
            return deflated_route(m64, (big_values, big_vectors), 2, svd64)

        return tf.cond(accurate, lambda: eigen(values, vectors, 1), deflate)

    def float64_routes():
        m64 = tf.cast(scaled, tf.float64)
        # A batch dominated by one direction (a collapsing one): that
        # direction by power iteration, then one decomposition of the rest.
        *top, dominant = dominant_direction(m64)

        def collapsing():
            def float64_gram():
                return deflated_route(
                    m64, top, 2, lambda: two_decompositions(m64)
                )

            if x.dtype == tf.float64:
                return float64_gram()
            return branch(
                large(x),
                lambda: float32_svd_deflated(m64, top, float64_gram),
                float64_gram,
            )

        def spread():
            if x.dtype == tf.float64:
                return two_decompositions(m64)
            return branch(
                large(x),
                lambda: float32_svd(m64),
                lambda: two_decompositions(m64),
            )

        return tf.cond(dominant, collapsing, spread)

    def float32_svd(m64):
        # Route 5: one float32 SVD with vectors serves both passes when
        # U V^T is well conditioned (s_max / s_min <= 2e3, or 2 s_max /
        # (s_k-1 + s_k) for a square batch): U V^T within ~5e-5 of float64.
        singular, left, right = tf.linalg.svd(scaled)
        largest = singular[0]  # sorted in decreasing order
        size = tf.cast(tf.reduce_max(tf.shape(scaled)), x.dtype)
        keep = singular > size * _EPS_FLOAT32 * largest
        total = tf.reduce_sum(tf.where(keep, singular, tf.zeros_like(singular)))
        left = left * tf.cast(keep, x.dtype)
        square = tf.equal(tf.shape(scaled)[0], tf.shape(scaled)[1])
        bottom = tf.where(square, tf.reduce_mean(singular[-2:]), singular[-1])
        return tf.cond(
            bottom >= RCOND_FLOAT32_SVD * largest,
            lambda: outputs(total, 5, svd32=(left, tf.transpose(right))),
            lambda: two_decompositions(m64),
        )

    def float32_svd_deflated(m64, top, otherwise):
        # Route 6: y = m (I - v v^T) in float64, one float32 SVD of y. The
        # deflated direction leaves only rounding in y: exactly one
        # singular value below the floor, and U V^T of the rest well
        # conditioned (as route 5, over the kept pairs).
        big_values, big_vectors = top
        residual = m64 - tf.matmul(
            tf.matmul(m64, big_vectors), big_vectors, transpose_b=True
        )
        singular, left, right = tf.linalg.svd(tf.cast(residual, x.dtype))
        largest = singular[0]
        size = tf.cast(tf.reduce_max(tf.shape(scaled)), x.dtype)
        keep = singular > size * _EPS_FLOAT32 * largest
        dropped = tf.reduce_sum(tf.cast(~keep, tf.int32))
        square = tf.equal(tf.shape(scaled)[0], tf.shape(scaled)[1])
        bottom = tf.where(square, tf.reduce_mean(singular[-3:-1]), singular[-2])
        accepted = tf.equal(dropped, tf.size(big_values)) & (
            bottom >= RCOND_FLOAT32_SVD * largest
        )
        kept = tf.where(keep, singular, tf.zeros_like(singular))
        total = tf.reduce_sum(tf.sqrt(big_values)) + tf.reduce_sum(
            tf.cast(kept, tf.float64)
        )
        left = left * tf.cast(keep, x.dtype)
        pairs = (
            big_values,
            big_vectors,
            _empty(tf.float64, 1),
            _empty(tf.float64, 2),
            _empty(tf.float64, 2),
        )
        return tf.cond(
            accepted,
            lambda: outputs(
                total,
                6,
                deflated64=pairs,
                svd32=(left, tf.transpose(right)),
            ),
            otherwise,
        )

    def float32_gram():
        m64 = tf.cast(scaled, tf.float64)
        *top, dominant = dominant_direction(m64)

        def collapsing():
            # Never well conditioned (route 0 cannot take it); the rest,
            # for these shapes, usually is: its Gram in float32 first.
            def float64_gram():
                return deflated_route(
                    m64, top, 2, lambda: two_decompositions(m64)
                )

            return deflated_route(m64, top, 4, float64_gram)

        def spread():
            # The float32 Gram, decomposed in float64 (TF's float32 eigh
            # loses up to ~5e-6 of U V^T; this one ~1e-6 at k = 2048).
            gram32 = tf.cast(gram(scaled), tf.float64)
            values, vectors = tf.linalg.eigh(gram32)
            well_conditioned = values[0] >= RCOND_FLOAT32 * values[-1]

            def route0():
                # No eigenvalue is near zero here, so none is dropped; an
                # all-zero batch (every eigenvalue 0) gives 0.
                return eigen(values, vectors, 0)

            return tf.cond(
                well_conditioned, route0, lambda: two_decompositions(m64)
            )

        return tf.cond(dominant, collapsing, spread)

    if x.dtype == tf.float64:
        result = float64_routes()
    else:
        result = branch(far_from_square(x), float32_gram, float64_routes)
    total, *slots, route = result
    return total, scaled, tall, tuple(slots), route


@tf.custom_gradient
def _singular_value_sum(x: tf.Tensor):
    """Sum of singular values of a 2-D float32/float64 matrix, U V^T grad."""
    unit, scale = rescale(x)
    total, scaled, tall, slots, route = _decompose(unit)
    values64, vectors64, *deflated64, left64, right64, left32, right32 = slots

    def grad(upstream):
        def gram_float32():
            # P in float64, applied to the float32 batch in float32.
            _, inverse = singular_from_eigenvalues(values64, 0.0)
            projector = tf.matmul(
                vectors64 * inverse, vectors64, transpose_b=True
            )
            return tf.matmul(scaled, tf.cast(projector, x.dtype))

        def gram_float64():
            m64 = tf.cast(scaled, tf.float64)
            return tf.cast(direction(m64, values64, vectors64), x.dtype)

        def deflated_float64():
            # U V^T = m P_big + y P_small: the small pairs' directions come
            # from y, which holds no trace of the big singular directions
            # (m z_i would carry s_max times z_i's rounding in them).
            big_values, big_vectors, small_values, small_vectors, y = deflated64
            m64 = tf.cast(scaled, tf.float64)
            big = tf.matmul(m64, big_vectors) * tf.math.rsqrt(big_values)
            uv = tf.matmul(big, big_vectors, transpose_b=True)
            uv += direction(y, small_values, small_vectors)
            return tf.cast(uv, x.dtype)

        def svd_float64():
            return tf.cast(tf.matmul(left64, right64), x.dtype)

        def deflated_float32():
            # Route 4: the small pairs' part in float32, as computed.
            big_values, big_vectors, small_values, small_vectors, y = deflated64
            m64 = tf.cast(scaled, tf.float64)
            big = tf.matmul(m64, big_vectors) * tf.math.rsqrt(big_values)
            uv = tf.matmul(big, big_vectors, transpose_b=True)
            _, inverse = singular_from_eigenvalues(small_values, 0.0)
            projector = tf.matmul(
                small_vectors * inverse, small_vectors, transpose_b=True
            )
            small = tf.matmul(
                tf.cast(y, tf.float32), tf.cast(projector, tf.float32)
            )
            return tf.cast(uv, x.dtype) + tf.cast(small, x.dtype)

        def svd_float32():
            return tf.matmul(left32, right32)

        def deflated_svd_float32():
            # Route 6: the deflated direction in float64, y's pairs as
            # decomposed, in float32.
            big_values, big_vectors, *_ = deflated64
            m64 = tf.cast(scaled, tf.float64)
            big = tf.matmul(m64, big_vectors) * tf.math.rsqrt(big_values)
            uv = tf.matmul(big, big_vectors, transpose_b=True)
            return tf.cast(uv, x.dtype) + tf.matmul(left32, right32)

        branches = [
            gram_float32,
            gram_float64,
            deflated_float64,
            svd_float64,
            deflated_float32,
            svd_float32,
            deflated_svd_float32,
        ]
        if x.dtype == tf.float64 or far_from_square(x) is False:
            # Routes 0 and 4 cannot fire: stand-ins.
            branches[0] = gram_float64
            branches[4] = deflated_float64
        if x.dtype == tf.float64 or large(x) is False:
            branches[5] = branches[6] = gram_float64
        uv = tf.switch_case(route, branches)
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
