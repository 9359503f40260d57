"""A two-view self-supervised model: encoder + projector, any two-view loss."""

import keras
import tensorflow as tf

from keras_featreg.losses.two_view import TwoViewLoss
from keras_featreg.models.two_view_inputs import unpack_views
from keras_featreg.ops import gather_batch
from keras_featreg.ops import l2_normalize
from keras_featreg.ops import mean_singular_value
from keras_featreg.ops.batch import num_replicas_in_sync
from keras_featreg.utils.validation import check_bool


@keras.saving.register_keras_serializable(package="keras_featreg")
class TwoViewModel(keras.Model):
    """Trains `projector(encoder(x))` with a two-view loss on view pairs.

    The joint-embedding recipe of VICReg (and of SVMax's self-supervised
    experiment): both views of an image go through the same encoder and
    projector, and `loss(z_a, z_b)` (e.g. `keras_featreg.losses.VICRegLoss`
    or `InvarianceSVMaxLoss`, or any `keras.losses.Loss` taking the two
    embeddings as `(y_true, y_pred)`) is minimized. The loss is a parameter:
    the model hard-codes no algorithm.

    ```python
    z_a = projector(encoder(view_a)); z_b = projector(encoder(view_b))
    loss = loss_fn(z_a, z_b) + sum(regularization losses of the parts)
    ```

    Data: `fit` takes batches of view pairs `(view_a, view_b)` (e.g. from
    `keras_featreg.data.two_view_dataset`, augmented in parallel on the
    CPU), also with labels, `((view_a, view_b), labels)` (ignored), or,
    with an `augmenter` (a Keras layer of random preprocessing layers),
    batches of images `x` (or `(x, labels)`; labels are ignored) from which
    the model makes two views by calling the augmenter twice in training
    mode. `evaluate` does the same (with the augmenter in training mode
    too, since identical views would make the loss trivial). See
    `keras_featreg.models.two_view_inputs`.

    Metrics, in the progress bar and `History`: `loss`; the loss's own
    unweighted terms when it is a `keras_featreg.losses.TwoViewLoss`
    (VICReg: `invariance`, `variance`, `covariance`), taken from the same
    computation as the loss (each term is computed once per step);
    `mean_singular_value` (s_mu of the L2-normalized first-view embeddings,
    reused from the loss when it computes it, as `InvarianceSVMaxLoss`
    does) and `embedding_std` (their mean per-dimension standard
    deviation), the two numbers that show a collapse. Set
    `track_terms=False` to log the loss only.

    Mixed precision: the embeddings are cast to float32 before the loss,
    and the loss goes through `optimizer.scale_loss` (the loss scaling that
    `compile` sets up under `mixed_float16`).

    Bad input fails clearly: non-numeric (e.g. string) views or images
    (`TypeError`), views of different shapes or batch sizes, a
    single view without an augmenter, an encoder output of rank != 2, fewer
    than 2 rows in a batch (e.g. a last partial batch of one: batch with
    `drop_remainder=True`), and NaN/Inf in the views (checked on the views
    themselves: a ReLU can hide a NaN pixel from the loss while its gradient
    still poisons the weights). Shapes known while tracing raise
    `ValueError`; what is only known at run time raises
    `InvalidArgumentError` with the same message.

    Under tf.distribute the per-sample loss is divided by the number of
    replicas (Keras sums the replicas' gradients), and so are the parts'
    regularization losses. The at-least-2-rows check and the logged s_mu
    and std are on the global batch (a last global batch of 2 rows trains
    on two replicas as on one device). XLA (`jit_compile=True`, Keras'
    default on a GPU) is supported; with an `augmenter` Keras trains
    without XLA (the augmentation layers cannot be compiled).

    Compile with an optimizer only (e.g. `keras_featreg.optimizers.LARS`);
    the loss is given at construction. `export_encoder(path)` writes the
    encoder, the part used downstream, as a SavedModel for serving.

    Args:
        encoder: Keras model/layer mapping inputs to `(batch, features)`
            representations (pool conv features inside it).
        projector: Keras model/layer mapping representations to embeddings
            (`keras_featreg.layers.build_projector`).
        loss: A `keras.losses.Loss` (instance, name or config) called as
            `loss(z_a, z_b)`.
        augmenter: Optional Keras layer making a random view of a batch.
            Defaults to `None` (the data must be view pairs).
        track_terms: Bool, report the loss terms, s_mu and the std.
            Defaults to `True`.
        **kwargs: passed to `keras.Model` (`name`, ...).

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> encoder = keras.Sequential([keras.layers.Flatten(),
    ...                             keras.layers.Dense(64)])
    >>> model = keras_featreg.models.TwoViewModel(
    ...     encoder, keras_featreg.layers.build_projector((128, 128)),
    ...     loss=keras_featreg.losses.VICRegLoss())
    >>> model.compile(optimizer="adam")
    >>> images, _ = keras_featreg.data.load_digits()  # 8 x 8
    >>> views = keras_featreg.data.two_view_dataset(
    ...     images, batch_size=64, image_size=8, seed=0)
    >>> history = model.fit(views.take(2), epochs=1, verbose=0)
    >>> sorted(history.history)[:3]
    ['covariance', 'embedding_std', 'invariance']

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906).
    """

    def __init__(
        self,
        encoder,
        projector,
        loss,
        augmenter=None,
        track_terms: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(encoder):
            raise TypeError(
                f"`encoder` must be a Keras layer or model. Received: "
                f"encoder={encoder!r}"
            )
        if not callable(projector):
            raise TypeError(
                f"`projector` must be a Keras layer or model. Received: "
                f"projector={projector!r}"
            )
        if augmenter is not None and not callable(augmenter):
            raise TypeError(
                f"`augmenter` must be a Keras layer or None. Received: "
                f"augmenter={augmenter!r}"
            )
        self.encoder = encoder
        self.projector = projector
        self.augmenter = augmenter
        self.loss_fn = keras.losses.get(loss)  # `compile()` owns `self.loss`
        if not callable(self.loss_fn):
            raise TypeError(
                f"`loss` must be a keras.losses.Loss. Received: loss={loss!r}"
            )
        self.track_terms = check_bool("track_terms", track_terms)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.term_trackers = {}
        if self.track_terms:
            names = []
            if isinstance(self.loss_fn, TwoViewLoss):
                names += self.loss_fn.term_names
            names += ["mean_singular_value", "embedding_std"]
            self.term_trackers = {
                name: keras.metrics.Mean(name=name) for name in names
            }

    @property
    def metrics(self):
        return [self.loss_tracker, *self.term_trackers.values()]

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        if loss is not None:
            raise ValueError(
                "TwoViewModel takes its loss at construction "
                "(`TwoViewModel(encoder, projector, loss=...)`); compile it "
                f"with an optimizer only. Received: loss={loss!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        # Keras skips models with a custom `compile()`; ours only forbids a
        # loss, so the saved optimizer (and its state) can be restored.
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def call(self, inputs, training=False):
        # One top-level call for both views keeps both views' penalties.
        if isinstance(inputs, (tuple, list)):
            return tuple(self._embed(view, training) for view in inputs)
        return self._embed(inputs, training)

    def _embed(self, inputs, training):
        features = self.encoder(inputs, training=training)
        if len(features.shape) != 2:
            raise ValueError(
                "The encoder must return (batch_size, features); pool or "
                "flatten conv features inside it. Received: "
                f"encoder output shape={tuple(features.shape)}"
            )
        return self.projector(features, training=training)

    def _two_view_loss(self, data, training):
        """The step's loss, embeddings and logged terms (one computation)."""
        view_a, view_b = unpack_views(data, self.augmenter)
        z_a, z_b = self((view_a, view_b), training=training)
        # Read before any cross-replica op (replicas share `self.losses`).
        penalty = tf.add_n(self.losses) if self.losses else 0.0
        z_a = tf.cast(z_a, "float32")
        z_b = tf.cast(z_b, "float32")
        # A per-sample Loss: Keras divides by the number of replicas.
        terms = {}
        if self.track_terms and isinstance(self.loss_fn, TwoViewLoss):
            loss, terms = self.loss_fn.loss_and_terms(z_a, z_b)
        else:
            loss = self.loss_fn(z_a, z_b)
        total = loss + tf.cast(penalty, "float32") / num_replicas_in_sync()
        return total, z_a, terms

    def _track(self, loss, z_a, terms):
        self.loss_tracker.update_state(loss * num_replicas_in_sync())
        if self.track_terms:
            values = {name: tf.stop_gradient(v) for name, v in terms.items()}
            # s_mu and the std of the global batch: every replica logs the
            # same values (an empty replica has none of its own).
            z_a = gather_batch(tf.stop_gradient(z_a))
            if "mean_singular_value" not in values:
                values["mean_singular_value"] = mean_singular_value(
                    l2_normalize(z_a)
                )
            values["embedding_std"] = tf.reduce_mean(
                tf.math.reduce_std(z_a, axis=0)
            )
            for name, tracker in self.term_trackers.items():
                tracker.update_state(values[name])
        return {metric.name: metric.result() for metric in self.metrics}

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss, z_a, terms = self._two_view_loss(data, training=True)
            # Mixed float16: `compile` wraps the optimizer in a
            # LossScaleOptimizer, whose `apply` unscales the gradients.
            scaled_loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # Under tf.distribute, Keras sums the gradients over replicas here.
        self.optimizer.apply(gradients, self.trainable_variables)
        return self._track(loss, z_a, terms)

    def test_step(self, data):
        loss, z_a, terms = self._two_view_loss(data, training=False)
        return self._track(loss, z_a, terms)

    def export_encoder(self, filepath: str, **kwargs) -> None:
        """Exports the encoder as a SavedModel (`encoder.export`)."""
        self.encoder.export(filepath, **kwargs)

    def get_config(self) -> dict:
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update(
            {
                "encoder": serialize(self.encoder),
                "projector": serialize(self.projector),
                "loss": serialize(self.loss_fn),
                "augmenter": (
                    None
                    if self.augmenter is None
                    else serialize(self.augmenter)
                ),
                "track_terms": self.track_terms,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        deserialize = keras.saving.deserialize_keras_object
        for key in ("encoder", "projector", "loss", "augmenter"):
            if config.get(key) is not None:
                config[key] = deserialize(config[key])
        return cls(**config)
