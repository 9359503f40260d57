"""Collapse monitoring for `fit`: History, CSVLogger and TensorBoard."""

import warnings

import keras
import numpy as np

from keras_featreg.evaluation.collapse import DEFAULT_STD_THRESHOLD
from keras_featreg.evaluation.collapse import embedding_collapse_report
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_int
from keras_featreg.utils.validation import check_positive

LOG_KEYS = {
    "mean_singular_value": "mean_singular_value",
    "svmax_lower_bound": "lower_bound",
    "svmax_upper_bound": "upper_bound",
    "collapsed_dimensions": "collapsed_dimensions",
}


class CollapseMonitor(keras.callbacks.Callback):
    """Measures embedding collapse on a fixed batch at the end of epochs.

    At the end of epochs 0, `every`, 2 `every`, ... (0-based) it embeds the
    fixed batch `x`, runs
    `keras_featreg.evaluation.collapse.embedding_collapse_report` on it and
    writes these entries into the epoch's `logs` dict:

    - `mean_singular_value`: s_mu of the (L2-normalized) embeddings of `x`,
    - `svmax_lower_bound`, `svmax_upper_bound`: `svmax_bounds(len(x), d)`,
    - `collapsed_dimensions`: dimensions whose std over `x` is below
      `std_threshold`.

    Keras passes one `logs` dict through the callbacks in list order and
    appends its own `History` and progress bar last, so `History`
    (`fit(...).history`) sees these keys. Put `CollapseMonitor` BEFORE
    `keras.callbacks.CSVLogger` and `keras.callbacks.TensorBoard` in the
    `callbacks` list, or they will not see them (TensorBoard writes them as
    `epoch_mean_singular_value`, ...; it needs the `tensorboard` package:
    `pip install "keras-featreg[tensorboard]"`). The first epoch is always
    measured, so CSVLogger (which fixes its columns at the first epoch)
    gets the columns; on skipped epochs the keys are absent, as Keras does
    for `validation_freq` (CSVLogger writes "NA"). A key that is already in
    `logs` (e.g. from a compiled `MeanSingularValue` metric with the same
    name) is left alone, with a warning: set `prefix` to avoid the clash.

    Every measurement is also appended to `self.history`, a list of dicts
    (`epoch` plus the whole report), for plotting.

    Args:
        x: Array or tensor, a fixed input batch (at least 2 samples; more
            samples than embedding dimensions for a meaningful s_mu).
        every: Int >= 1, measure every `every` epochs. Defaults to `1`.
        std_threshold: Float > 0, see `embedding_collapse_report`. Defaults
            to `1e-3`.
        normalize: Bool, whether to L2-normalize the embeddings first.
            Defaults to `True`.
        embedding_model: Optional Keras model that maps `x` to the
            embeddings (e.g. the encoder inside a larger model). Defaults to
            `None` (the model being trained).
        layer_name: Optional name of a layer of the trained (functional)
            model whose output is the embedding. Defaults to `None`. At most
            one of `embedding_model` and `layer_name`.
        batch_size: Int >= 1, batch size for embedding `x`. Defaults to
            `256`.
        prefix: String prepended to the log keys. Defaults to `""`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_featreg
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 8)).astype("float32")
    >>> y = rng.normal(size=(64, 4)).astype("float32")
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="sgd", loss="mse")
    >>> monitor = keras_featreg.callbacks.CollapseMonitor(x[:32])
    >>> history = model.fit(
    ...     x,
    ...     y,
    ...     epochs=2,
    ...     verbose=0,
    ...     callbacks=[monitor, keras.callbacks.CSVLogger("log.csv")],
    ... )
    >>> len(history.history["mean_singular_value"])
    2
    >>> round(float(history.history["svmax_upper_bound"][0]), 4)  # sqrt(32/4)
    2.8284

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Fig. 3, 15.
    """

    def __init__(
        self,
        x,
        every: int = 1,
        std_threshold: float = DEFAULT_STD_THRESHOLD,
        normalize: bool = True,
        embedding_model: keras.Model | None = None,
        layer_name: str | None = None,
        batch_size: int = 256,
        prefix: str = "",
    ) -> None:
        super().__init__()
        if x is None or len(x) < 2:
            raise ValueError(
                "`x` must be a batch of at least 2 samples. "
                f"Received: x={x if x is None else f'<{len(x)} samples>'}"
            )
        self.x = x
        self.every = check_int("every", every, minimum=1)
        self.std_threshold = check_positive("std_threshold", std_threshold)
        self.normalize = check_bool("normalize", normalize)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        if embedding_model is not None and layer_name is not None:
            raise ValueError(
                "Pass at most one of `embedding_model` and `layer_name`. "
                f"Received: embedding_model={embedding_model}, "
                f"layer_name={layer_name!r}"
            )
        if layer_name is not None and not isinstance(layer_name, str):
            raise TypeError(
                f"`layer_name` must be a string. Received: "
                f"layer_name={layer_name!r}"
            )
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string. Received: {prefix=}")
        self.embedding_model = embedding_model
        self.layer_name = layer_name
        self.prefix = prefix
        self.history = []
        self._warned = set()
        self._sub_model = None

    def _embedder(self) -> keras.Model:
        if self.embedding_model is not None:
            return self.embedding_model
        if self.layer_name is None:
            return self.model
        if self._sub_model is None:
            layer = self.model.get_layer(self.layer_name)
            self._sub_model = keras.Model(self.model.inputs, layer.output)
        return self._sub_model

    def measure(self) -> dict:
        """Embeds `x` now and returns `embedding_collapse_report` of it."""
        embeddings = self._embedder().predict(
            self.x, batch_size=self.batch_size, verbose=0
        )
        if isinstance(embeddings, (list, tuple, dict)):
            raise ValueError(
                "`CollapseMonitor` needs a model with one embedding output; "
                "pass `embedding_model` or `layer_name`. Received: "
                f"{len(embeddings)} outputs"
            )
        return embedding_collapse_report(
            np.asarray(embeddings),
            std_threshold=self.std_threshold,
            normalize=self.normalize,
        )

    def on_epoch_end(self, epoch, logs=None):
        if epoch % self.every:
            return
        report = self.measure()
        self.history.append({"epoch": epoch, **report})
        if logs is None:
            return
        for log_key, report_key in LOG_KEYS.items():
            key = self.prefix + log_key
            if key in logs:
                if key not in self._warned:
                    self._warned.add(key)
                    warnings.warn(
                        f"`CollapseMonitor` leaves `logs[{key!r}]` alone: "
                        "another metric already logs it. Set `prefix` to "
                        f"log both. Received: prefix={self.prefix!r}",
                        stacklevel=2,
                    )
                continue
            logs[key] = report[report_key]
