"""The interface of two-view losses: per-sample values and logged terms.

`TwoViewLoss` is what `keras_featreg.models.TwoViewModel` relies on (no
duck typing): a loss of two views' embeddings that computes its unweighted
terms in the same pass as its value, so that a training step computes each
term once and logs it. `VICRegLoss` and `InvarianceSVMaxLoss` subclass it;
any other `keras.losses.Loss` taking `(z_a, z_b)` still trains, unlogged.

The terms of `__call__` are handed back per thread (tf.distribute's
`MirroredStrategy` runs each replica in its own thread) and per loss
instance, as `keras_featreg.losses.labels` does for the labels; nothing is
stored on the loss, so it serializes and copies as any Keras loss.
"""

import abc
import threading

import keras

_local = threading.local()


def _captures() -> dict:
    """This thread's `{id(loss): [[terms], ...]}` of running calls."""
    captures = getattr(_local, "captures", None)
    if captures is None:
        captures = _local.captures = {}
    return captures


class TwoViewLoss(keras.losses.Loss, abc.ABC):
    """A loss of two views' embeddings that also reports its terms.

    Called as `loss(z_a, z_b)`: the first view's embeddings take the place
    of `y_true`. A subclass implements:

    - `term_names`: tuple of the names of its unweighted terms (the metrics
      `TwoViewModel` logs), e.g. `("invariance", "variance",
      "covariance")`.
    - `values_and_terms(z_a, z_b, with_terms)`: `(values, terms)`, the
      per-sample values `(batch_size,)` that `call` returns (Keras then
      reduces them, applies `sample_weight` and divides by the replica
      count) and, when `with_terms`, a dict of the scalar terms named by
      `term_names` (on the global batch when the loss gathers), else
      `None`. The dict may also hold `"mean_singular_value"`, s_mu of the
      L2-normalized first view over the global batch, when the loss
      computes it anyway: `TwoViewModel` then logs it instead of a
      decomposition of its own.

    It inherits:

    - `call(y_true, y_pred)`: the values (the Keras `Loss` path).
    - `terms(z_a, z_b)`: the terms alone.
    - `loss_and_terms(z_a, z_b, sample_weight=None)`: what `__call__`
      returns, and the terms of that same computation.
    """

    term_names: tuple = ()

    @abc.abstractmethod
    def values_and_terms(self, z_a, z_b, with_terms: bool = True):
        """Per-sample values and (with `with_terms`) the terms dict."""

    def call(self, y_true, y_pred):
        stack = _captures().get(id(self))
        values, terms = self.values_and_terms(
            y_true, y_pred, with_terms=bool(stack)
        )
        if stack:
            stack[-1].append(terms)
        return values

    def terms(self, z_a, z_b) -> dict:
        """The unweighted terms named by `term_names` (scalars)."""
        terms = self.values_and_terms(z_a, z_b)[1]
        return {name: terms[name] for name in self.term_names}

    def loss_and_terms(self, z_a, z_b, sample_weight=None):
        """`loss(z_a, z_b, sample_weight)` and the terms computed with it.

        Returns:
            `(loss, terms)`: what `__call__` returns, and the dict of
            `values_and_terms` from the same computation.
        """
        captured = []
        stack = _captures().setdefault(id(self), [])
        stack.append(captured)
        try:
            loss = self(z_a, z_b, sample_weight)
        finally:
            stack.pop()
            if not stack:
                del _captures()[id(self)]
        return loss, captured[-1]
