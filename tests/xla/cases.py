"""XLA cases: every public op, regularizer, loss, metric, layer and model.

Each case builds the same computation twice, with `jit_compile=False` and
`jit_compile=True`, and returns both results. Model cases run one epoch of
`fit` on 40 samples with `batch_size=16` (a last partial batch of 8, so Keras
retraces with a dynamic `None` batch), then `evaluate` and `predict`; op
cases compute value and gradient under `tf.function` with a dynamic batch
signature. Run as a script (`python -m tests.xla.cases GROUP`): an XLA
failure can abort the process, so tests/xla/test_xla.py runs each group in a
subprocess and reads one JSON line per case.
"""

import functools
import json
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_featreg as kf  # noqa: E402

RTOL = 1e-5
ATOL = 1e-6
SAMPLES, BATCH, FEATURES, DIM = 40, 16, 12, 8


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, FEATURES)).astype("float32")
    labels = np.repeat(np.arange(SAMPLES // 4), 4).astype("int32")
    return x, labels


def _dense_model(*layers_after, units=DIM, **dense_kwargs):
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(
                units,
                kernel_initializer=keras.initializers.GlorotUniform(1),
                **dense_kwargs,
            ),
            *layers_after,
        ]
    )


def _fit_results(model, x, y, jit, metrics=None, loss=None):
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss=loss,
        metrics=metrics,
        jit_compile=jit,
    )
    history = model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    results = {f"fit_{k}": v[-1] for k, v in history.history.items()}
    evaluated = model.evaluate(x, y, batch_size=BATCH, verbose=0)
    results["evaluate"] = evaluated
    results["predict"] = model.predict(x, batch_size=BATCH, verbose=0)
    for i, weight in enumerate(model.weights):
        results[f"weight_{i}"] = np.asarray(weight)
    return results


# ---------------------------------------------------------------- ops


# One tf.function per (fn, jit, signature), shared by the cases of that fn:
# one trace per signature instead of one per batch (XLA still compiles once
# per concrete shape).
_COMPILED = {}


def _op_case(fn, inputs, signature_dims=None):
    """Value and gradient of `fn(*inputs)` under tf.function, dynamic batch."""

    def value_and_grad(*args):
        with tf.GradientTape() as tape:
            tape.watch(args)
            value = fn(*args)
        return value, tape.gradient(value, args)

    def run(jit):
        specs = tuple(
            tf.TensorSpec([None, *a.shape[1:]], tf.as_dtype(a.dtype))
            for a in inputs
        )
        key = (fn, jit, specs)
        if key not in _COMPILED:
            _COMPILED[key] = tf.function(
                value_and_grad, jit_compile=jit, input_signature=specs
            )
        compiled = _COMPILED[key]
        value, grads = compiled(*[tf.constant(a) for a in inputs])
        out = {"value": np.asarray(value)}
        for i, g in enumerate(grads):
            out[f"grad_{i}"] = np.asarray(g)
        return out

    return run


def _batches():
    rng = np.random.default_rng(3)
    v = rng.normal(size=DIM)
    noisy = v + 1e-3 * rng.normal(size=(24, DIM))
    return {
        "random": rng.normal(size=(24, DIM)),
        "wide": rng.normal(size=(5, DIM)),  # b < d
        "one_row": rng.normal(size=(1, DIM)),
        "rank1": np.tile(v, (24, 1)),
        "zero": np.zeros((24, DIM)),
        "collapsed": noisy / np.linalg.norm(noisy, axis=1, keepdims=True),
        "huge": 1e30 * rng.normal(size=(24, DIM)),
        "tiny": 1e-30 * rng.normal(size=(24, DIM)),
    }


def _nan_case(jit):
    """XLA drops the NaN/Inf assertion: the value and gradient are NaN.

    (Without XLA the assertion raises; the documented XLA outcome is the
    expectation.)
    """
    if not jit:
        return {"nan_value": 1.0, "nan_grad": 1.0}
    x = _batches()["random"].astype("float32")
    x[3, 2] = np.nan
    out = _op_case(kf.ops.mean_singular_value, [x])(True)
    return {
        "nan_value": float(np.isnan(out["value"])),
        "nan_grad": float(np.all(np.isnan(out["grad_0"]))),
    }


def op_cases():
    cases = {}
    for name, batch in _batches().items():
        for dtype in ("float32", "float64"):
            x = batch.astype(dtype)
            cases[f"mean_singular_value[{name},{dtype}]"] = _op_case(
                kf.ops.mean_singular_value, [x]
            )
    cases["mean_singular_value[nan_input_gives_nan]"] = _nan_case
    x = _batches()["random"].astype("float32")
    y = (x + 0.1).astype("float32")
    labels = np.repeat(np.arange(6), 4).astype("int32")
    svmax = kf.regularizers.SVMaxRegularizer(0.5)
    cases.update(
        {
            "svmax_penalty_bounded": _op_case(svmax.penalty, [x]),
            "svmax_penalty_unbounded": _op_case(
                kf.regularizers.SVMaxRegularizer(0.5, bounded=False).penalty,
                [x],
            ),
            "vicreg_penalty": _op_case(
                kf.regularizers.VICRegRegularizer().penalty, [x]
            ),
            "vicreg_loss": _op_case(kf.ops.vicreg_loss, [x, y]),
            "vicreg_variance": _op_case(kf.ops.vicreg_variance, [x]),
            "vicreg_covariance": _op_case(kf.ops.vicreg_covariance, [x]),
            "vicreg_covariance_wide": _op_case(
                kf.ops.vicreg_covariance,
                [np.random.default_rng(1).normal(size=(4, 16)).astype("f4")],
            ),
            "vicreg_invariance": _op_case(kf.ops.vicreg_invariance, [x, y]),
            "l2_normalize": _op_case(
                lambda a: tf.reduce_sum(kf.ops.l2_normalize(a) ** 3), [x]
            ),
            "pairwise_distances": _op_case(
                lambda a: tf.reduce_sum(kf.ops.pairwise_distances(a)), [x]
            ),
            "pairwise_similarities": _op_case(
                lambda a: tf.reduce_sum(
                    kf.ops.pairwise_similarities(a, normalize=True)
                ),
                [x],
            ),
            "svmax_bounds": _op_case(
                lambda a: (
                    tf.add_n(
                        list(
                            kf.ops.svmax_bounds(tf.shape(a)[0], tf.shape(a)[1])
                        )
                    )
                    + 0.0 * tf.reduce_sum(a)
                ),
                [x],
            ),
        }
    )
    for loss_name in (
        "contrastive_loss",
        "triplet_loss",
        "n_pair_loss",
        "angular_loss",
        "lifted_structure_loss",
        "spread_out_loss",
    ):
        fn = getattr(kf.losses, loss_name)
        if loss_name == "spread_out_loss":  # random negatives differ
            fn = functools.partial(fn, negatives="all")
        cases[loss_name] = _op_case(
            lambda a, fn=fn: tf.reduce_mean(fn(labels, a)), [x]
        )
    return cases


# ------------------------------------------------- regularizers and layers


def _model_case(build, loss="mse", targets="regression", metrics=None):
    def run(jit):
        x, labels = _data()
        if targets == "regression":
            y = np.random.default_rng(1).normal(size=(SAMPLES, DIM))
            y = y.astype("float32")
        else:
            y = labels
        model = build()
        loss_obj = loss() if callable(loss) else loss
        metric_objs = [m() for m in metrics] if metrics else None
        return _fit_results(model, x, y, jit, metric_objs, loss_obj)

    return run


def layer_cases():
    svmax = kf.regularizers.SVMaxRegularizer
    vicreg = kf.regularizers.VICRegRegularizer
    wrap = kf.layers.EmbeddingRegularization
    return {
        "activity_svmax_bounded": _model_case(
            lambda: _dense_model(activity_regularizer=svmax(0.1))
        ),
        "activity_svmax_unbounded": _model_case(
            lambda: _dense_model(activity_regularizer=svmax(0.1, bounded=False))
        ),
        "activity_vicreg": _model_case(
            lambda: _dense_model(activity_regularizer=vicreg(1.0, 0.1))
        ),
        "wrapper_svmax": _model_case(lambda: _dense_model(wrap(svmax(0.1)))),
        "wrapper_vicreg": _model_case(
            lambda: _dense_model(wrap(vicreg(1.0, 0.1)))
        ),
        "wrapper_keras_l2": _model_case(lambda: _dense_model(wrap("l2"))),
        "metric_mean_singular_value": _model_case(
            lambda: _dense_model(),
            metrics=[kf.metrics.MeanSingularValue],
        ),
        "proxy_anchor": _model_case(
            lambda: _dense_model(
                kf.layers.ProxyAnchor(SAMPLES // 4, proxy_initializer="ones")
            ),
            loss=kf.losses.ProxyAnchorLoss,
            targets="labels",
        ),
    }


# ---------------------------------------------------------------- losses


def loss_cases():
    losses = kf.losses
    factories = {
        "contrastive": losses.ContrastiveLoss,
        "triplet_hard": lambda: losses.TripletLoss(mining="hard"),
        "triplet_semi_hard": lambda: losses.TripletLoss(mining="semihard"),
        "n_pair": losses.NPairLoss,
        "angular": losses.AngularLoss,
        "lifted_structure": losses.LiftedStructureLoss,
        "spread_out": lambda: losses.SpreadOutRegularizer(negatives="all"),
    }
    # RegularizedLoss around every loss: with SVMax around two of them (its
    # XLA route compiles slowly and is the same whatever the inner loss),
    # with VICReg around the others.
    with_svmax = ("contrastive", "triplet_semi_hard")
    cases = {}
    for name, factory in factories.items():
        cases[f"loss_{name}"] = _model_case(
            _dense_model, loss=factory, targets="labels"
        )
        regularizer = (
            functools.partial(kf.regularizers.SVMaxRegularizer, 0.1)
            if name in with_svmax
            else functools.partial(kf.regularizers.VICRegRegularizer, 1.0, 0.1)
        )
        cases[f"regularized_{name}"] = _model_case(
            _dense_model,
            loss=lambda factory=factory, regularizer=regularizer: (
                losses.RegularizedLoss(factory(), regularizer())
            ),
            targets="labels",
        )
    # Random negatives: XLA draws other numbers; it must run and stay finite.
    random_run = _model_case(
        _dense_model, loss=losses.SpreadOutRegularizer, targets="labels"
    )
    cases["loss_spread_out_random_finite"] = lambda jit: {
        key: np.all(np.isfinite(value)).astype("float64")
        for key, value in random_run(jit).items()
    }
    return cases


# ---------------------------------------------------------------- models


def _two_view_case(loss, track_terms=True):
    def run(jit):
        x, _ = _data()
        rng = np.random.default_rng(2)
        keras.utils.set_random_seed(0)
        encoder = keras.Sequential(
            [
                keras.Input((FEATURES,)),
                keras.layers.Dense(
                    DIM, kernel_initializer=keras.initializers.GlorotUniform(1)
                ),
            ]
        )
        projector = kf.layers.build_projector((DIM, DIM))
        model = kf.models.TwoViewModel(
            encoder, projector, loss=loss(), track_terms=track_terms
        )
        model.compile(optimizer=keras.optimizers.SGD(0.05), jit_compile=jit)
        x_b = (x + 0.3 * rng.normal(size=x.shape)).astype("float32")
        data = tf.data.Dataset.from_tensor_slices((x, x_b)).batch(BATCH)
        history = model.fit(data, epochs=1, verbose=0)
        results = {f"fit_{k}": v[-1] for k, v in history.history.items()}
        results["evaluate"] = model.evaluate(data, verbose=0)
        for i, weight in enumerate(model.weights):
            results[f"weight_{i}"] = np.asarray(weight)
        return results

    return run


def model_cases():
    return {
        "two_view_vicreg": _two_view_case(kf.losses.VICRegLoss),
        "two_view_invariance_svmax": _two_view_case(
            kf.losses.InvarianceSVMaxLoss
        ),
        "two_view_vicreg_untracked": _two_view_case(
            kf.losses.VICRegLoss, track_terms=False
        ),
    }


GROUPS = {
    "ops": op_cases,
    "layers": layer_cases,
    "losses": loss_cases,
    "models": model_cases,
}


def compare(reference: dict, compiled: dict) -> str | None:
    """None when equal to RTOL/ATOL and finite, else what differs."""
    if set(reference) != set(compiled):
        return f"keys differ: {sorted(reference)} vs {sorted(compiled)}"
    for key in reference:
        a = np.asarray(reference[key], dtype="float64")
        b = np.asarray(compiled[key], dtype="float64")
        if not np.all(np.isfinite(b)) and not key.startswith("nan_"):
            return f"{key}: non-finite under XLA"
        scale = max(float(np.max(np.abs(a), initial=0.0)), 1e-30)
        if key.startswith("weight_"):
            # Weights are O(1): a bias that a translation-invariant loss
            # leaves at rounding noise is compared in absolute terms.
            scale = max(scale, 1.0)
        if not np.allclose(b, a, rtol=RTOL, atol=ATOL * scale):
            error = float(np.max(np.abs(a - b))) / scale
            return f"{key}: relative difference {error:.3g}"
    return None


def main(group: str) -> None:
    cases = GROUPS[group]()
    for name, run in cases.items():
        try:
            problem = compare(run(False), run(True))
        except Exception as error:  # reported per case, not fatal
            lines = traceback.format_exception_only(type(error), error)
            problem = "".join(lines)[-1500:]
        print(json.dumps({"case": name, "problem": problem}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
