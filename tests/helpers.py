"""Test helpers on public Keras API: our `TestCase` and subprocess helpers.

Test modules import this module as `testing` (`from tests import helpers as
testing`) and subclass `testing.TestCase`, which covers what the tests used
from Keras' private `keras.src.testing.TestCase`:

- `setUp` clears the Keras session and turns traceback filtering off;
- tensor-aware `assertAllClose`, `assertNotAllClose`, `assertAllEqual`;
- `get_temp_dir` (removed after the test);
- `run_class_serialization_test` (`get_config` and `keras.saving`
  round trips through JSON) and `run_layer_test` (serialization, build,
  symbolic and eager calls, optional training step, mixed precision);
- `run_fit_smoke_test` (a few `fit` steps, finite loss);
- `serve_in_fresh_process` (loads a SavedModel in a new Python process
  that must not import `keras_featreg`, and returns its outputs).

Slow tests carry `@pytest.mark.slow`; `pytest -m "not slow"` skips them.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap

import keras
import numpy as np
from absl.testing import parameterized

SERVE_SCRIPT = textwrap.dedent(
    """
    import sys

    import numpy as np
    import tensorflow as tf

    model_dir, x_path, out_path, endpoint = sys.argv[1:]
    served = tf.saved_model.load(model_dir)
    outputs = getattr(served, endpoint)(tf.constant(np.load(x_path)))
    assert "keras_featreg" not in sys.modules, "keras_featreg was imported"
    np.save(out_path, np.asarray(outputs))
    """
)


def run_python(args, cwd=None, env=None, timeout=600):
    """Runs `python *args` in a fresh process; returns `CompletedProcess`.

    The environment is the current one with `TF_CPP_MIN_LOG_LEVEL=2` and
    `KERAS_BACKEND=tensorflow`, updated with `env`.
    """
    full_env = dict(
        os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow"
    )
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def serve_in_fresh_process(model_dir, x, endpoint="serve", timeout=300):
    """Serves `x` with the SavedModel at `model_dir` in a new process.

    The new process imports only NumPy and TensorFlow; it fails if
    `keras_featreg` gets imported. Returns the outputs as a NumPy array.
    """
    directory = tempfile.mkdtemp()
    try:
        x_path = os.path.join(directory, "x.npy")
        out_path = os.path.join(directory, "out.npy")
        np.save(x_path, np.asarray(x))
        result = run_python(
            ["-c", SERVE_SCRIPT, model_dir, x_path, out_path, endpoint],
            cwd=directory,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(
                "Serving in a fresh process failed:\n" + result.stderr[-3000:]
            )
        return np.load(out_path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def to_json_with_tuples(value):
    """JSON text of `value` that keeps tuples apart from lists."""

    def encode(obj):
        if isinstance(obj, tuple):
            return {"__class__": "tuple", "__value__": [encode(e) for e in obj]}
        if isinstance(obj, list):
            return [encode(e) for e in obj]
        if isinstance(obj, dict):
            return {key: encode(item) for key, item in obj.items()}
        return obj

    return json.dumps(encode(value), sort_keys=True, indent=4)


def from_json_with_tuples(text):
    """Inverse of `to_json_with_tuples`."""

    def decode(obj):
        if isinstance(obj, dict) and set(obj) == {"__class__", "__value__"}:
            return tuple(obj["__value__"])
        return obj

    return json.loads(text, object_hook=decode)


def _to_numpy(x):
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, keras.Variable) or keras.ops.is_tensor(x):
        return keras.ops.convert_to_numpy(x)
    if isinstance(x, (list, tuple)) and any(
        isinstance(e, keras.Variable) or keras.ops.is_tensor(e) for e in x
    ):
        return np.array([_to_numpy(e) for e in x])
    return np.array(x)


def _is_shape(x):
    return isinstance(x, (list, tuple)) and all(
        isinstance(e, (int, type(None))) for e in x
    )


def _map_shapes(fn, shape, dtype):
    if _is_shape(shape):
        return fn(tuple(shape), dtype)
    if isinstance(shape, dict):
        return {key: _map_shapes(fn, shape[key], dtype[key]) for key in shape}
    return type(shape)(
        _map_shapes(fn, s, d) for s, d in zip(shape, dtype, strict=True)
    )


def _eager_tensor(shape, dtype):
    rng = np.random.default_rng(0)
    values = rng.uniform(0.0, 3.0, size=shape).astype("float32")
    return keras.ops.cast(values, dtype)


def _seed_generator_count(layer):
    # A `keras.random.SeedGenerator` holds one `seed_generator_state`
    # variable; count those among the layer's (recursive) variables.
    return sum(
        "seed_generator" in variable.path for variable in layer.variables
    )


class TestCase(parameterized.TestCase):
    """`absl` parameterized test case with Keras-aware assertions."""

    maxDiff = None

    def setUp(self):
        super().setUp()
        # Tests stay independent of each other's layer names and graphs.
        keras.utils.clear_session(free_memory=False)
        if keras.config.is_traceback_filtering_enabled():
            keras.config.disable_traceback_filtering()

    def get_temp_dir(self):
        temp_dir = tempfile.mkdtemp()
        self.addCleanup(lambda: shutil.rmtree(temp_dir, ignore_errors=True))
        return temp_dir

    def convert_to_numpy(self, x):
        return _to_numpy(x)

    def assertAllClose(self, actual, desired, atol=1e-6, rtol=1e-6, msg=None):
        """Asserts equal shapes and elements within `atol + rtol * |b|`."""
        np.testing.assert_allclose(
            _to_numpy(actual),
            _to_numpy(desired),
            atol=atol,
            rtol=rtol,
            err_msg=msg or "",
        )

    def assertNotAllClose(self, x1, x2, atol=1e-6, rtol=1e-6, msg=None):
        try:
            self.assertAllClose(x1, x2, atol=atol, rtol=rtol)
        except AssertionError:
            return
        raise AssertionError(
            f"The two values are close at all elements.\n{msg or ''}\n"
            f"Values: {x1}"
        )

    def assertAllEqual(self, actual, desired, msg=None):
        np.testing.assert_array_equal(
            _to_numpy(actual), _to_numpy(desired), err_msg=msg or ""
        )

    def assertLen(self, container, expected_len, msg=None):
        self.assertEqual(len(container), expected_len, msg=msg)

    def assertDType(self, x, dtype, msg=None):
        x_dtype = keras.backend.standardize_dtype(
            x.dtype if hasattr(x, "dtype") else type(x)
        )
        self.assertEqual(
            x_dtype, keras.backend.standardize_dtype(dtype), msg=msg
        )

    def assertFileExists(self, path):
        if not os.path.isfile(path):
            raise AssertionError(f"File {path} does not exist")

    def run_class_serialization_test(self, instance, custom_objects=None):
        """Round-trips `instance` through `get_config` and `keras.saving`.

        Both round trips go through JSON text; the revived config must equal
        the original and the revived object must have the same attributes.
        Returns the instance revived by `keras.saving`.
        """
        cls = instance.__class__
        config_json = to_json_with_tuples(instance.get_config())
        ref_dir = set(dir(instance)) - {"__annotations__"}
        with keras.saving.custom_object_scope(custom_objects or {}):
            revived = cls.from_config(instance.get_config())
        self.assertEqual(config_json, to_json_with_tuples(revived.get_config()))
        self.assertEqual(ref_dir, set(dir(revived)) - {"__annotations__"})

        serialized_json = to_json_with_tuples(
            keras.saving.serialize_keras_object(instance)
        )
        with keras.saving.custom_object_scope(custom_objects or {}):
            revived = keras.saving.deserialize_keras_object(
                from_json_with_tuples(serialized_json)
            )
        self.assertEqual(config_json, to_json_with_tuples(revived.get_config()))
        self.assertEqual(ref_dir, set(dir(revived)) - {"__annotations__"})
        return revived

    run_serialization_test = run_class_serialization_test

    def run_layer_test(
        self,
        layer_cls,
        init_kwargs,
        input_shape=None,
        input_dtype=None,
        input_data=None,
        call_kwargs=None,
        expected_output_shape=None,
        expected_output_dtype=None,
        expected_output=None,
        expected_num_trainable_weights=None,
        expected_num_non_trainable_weights=None,
        expected_num_non_trainable_variables=None,
        expected_num_seed_generators=None,
        expected_num_losses=None,
        supports_masking=None,
        custom_objects=None,
        run_training_check=True,
        run_mixed_precision_check=True,
    ):
        """Basic checks of a layer, as Keras runs them on its own layers.

        Serialization round trip; `supports_masking`; `build` and a symbolic
        call (built, weight and seed-generator counts, output shape and
        dtype); an eager call (also `expected_output`, `expected_num_losses`);
        optionally one `fit` step on `sum(outputs)`; and a `mixed_float16`
        call whose output dtypes match `compute_output_spec` and whose float
        weights stay float32. Counts not given are taken from a first eager
        call. Single-input layers (or tuples/lists/dicts of shapes).
        """
        if (input_shape is None) == (input_data is None):
            raise ValueError("Pass exactly one of input_shape, input_data.")
        if expected_output is not None and input_data is None:
            raise ValueError("expected_output needs input_data.")
        init_kwargs = init_kwargs or {}
        call_kwargs = call_kwargs or {}
        if input_shape is not None:
            if input_dtype is None:
                input_dtype = keras.tree.map_shape_structure(
                    lambda _: "float32", input_shape
                )
            input_data = _map_shapes(_eager_tensor, input_shape, input_dtype)
            symbolic_inputs = _map_shapes(
                lambda shape, dtype: keras.KerasTensor(shape, dtype=dtype),
                input_shape,
                input_dtype,
            )
            build_shape = input_shape
        else:
            symbolic_inputs = keras.tree.map_structure(
                lambda x: keras.KerasTensor(
                    tuple(keras.ops.shape(x)),
                    dtype=keras.backend.standardize_dtype(x.dtype),
                ),
                input_data,
            )
            build_shape = keras.tree.map_structure(
                lambda x: tuple(keras.ops.shape(x)), input_data
            )

        def call(layer, inputs):
            if isinstance(inputs, dict):
                return layer(**inputs, **call_kwargs)
            return layer(inputs, **call_kwargs)

        counts = {
            "trainable_weights": expected_num_trainable_weights,
            "non_trainable_weights": expected_num_non_trainable_weights,
            "non_trainable_variables": expected_num_non_trainable_variables,
            "seed_generators": expected_num_seed_generators,
        }

        def measure(layer):
            return {
                "trainable_weights": len(layer.trainable_weights),
                "non_trainable_weights": len(layer.non_trainable_weights),
                "non_trainable_variables": len(layer.non_trainable_variables),
                "seed_generators": _seed_generator_count(layer),
            }

        layer = layer_cls(**init_kwargs)
        call(layer, input_data)
        for key, value in measure(layer).items():
            if counts[key] is None:
                counts[key] = value

        def check_built(layer):
            self.assertTrue(layer.built)
            for key, value in measure(layer).items():
                self.assertEqual(value, counts[key], msg=f"Unexpected {key}")

        def check_outputs(layer, outputs, eager):
            if expected_output_shape is not None:
                expected = expected_output_shape
                flat_outputs = keras.tree.flatten(outputs)
                if _is_shape(expected):
                    expected = [expected] * len(flat_outputs)
                for shape, x in zip(expected, flat_outputs, strict=True):
                    self.assertEqual(len(x.shape), len(shape), msg=x.shape)
                    for want, got in zip(shape, x.shape, strict=True):
                        if want is not None:
                            self.assertEqual(got, want, msg=x.shape)
            if expected_output_dtype is not None:
                for x in keras.tree.flatten(outputs):
                    self.assertDType(x, expected_output_dtype)
            if eager and expected_output is not None:
                for want, got in zip(
                    keras.tree.flatten(expected_output),
                    keras.tree.flatten(outputs),
                    strict=True,
                ):
                    self.assertAllClose(got, want)
            if eager and expected_num_losses is not None:
                self.assertLen(layer.losses, expected_num_losses)

        # Serialization and masking.
        layer = layer_cls(**init_kwargs)
        self.run_class_serialization_test(layer, custom_objects)
        if supports_masking is not None:
            self.assertEqual(layer.supports_masking, supports_masking)

        # Build, then a symbolic call.
        layer = layer_cls(**init_kwargs)
        if isinstance(build_shape, dict):
            layer.build(**build_shape)
        else:
            layer.build(build_shape)
        check_built(layer)
        layer = layer_cls(**init_kwargs)
        outputs = call(layer, symbolic_inputs)
        check_built(layer)
        check_outputs(layer, outputs, eager=False)

        # Eager call, then an optional training step.
        layer = layer_cls(**init_kwargs)
        outputs = call(layer, input_data)
        check_outputs(layer, outputs, eager=True)
        if run_training_check:
            model = _LayerModel(layer)
            model.compile(optimizer="sgd", loss=_SumLoss())
            model.fit(
                _repeat((input_data, outputs)), steps_per_epoch=1, verbose=0
            )

        if run_mixed_precision_check:
            layer = layer_cls(**{**init_kwargs, "dtype": "mixed_float16"})
            outputs = call(layer, input_data)
            specs = keras.tree.map_structure(
                lambda spec: keras.KerasTensor(
                    spec.shape,
                    dtype=layer.compute_dtype
                    if layer.autocast and "float" in spec.dtype
                    else spec.dtype,
                ),
                symbolic_inputs,
            )
            if isinstance(specs, dict):
                output_specs = layer.compute_output_spec(**specs)
            else:
                output_specs = layer.compute_output_spec(specs)
            for tensor, spec in zip(
                keras.tree.flatten(outputs),
                keras.tree.flatten(output_specs),
                strict=True,
            ):
                self.assertDType(tensor, spec.dtype)
            for weight in layer.weights:
                if "float" in keras.backend.standardize_dtype(weight.dtype):
                    self.assertDType(weight, "float32")

    def run_fit_smoke_test(self, model, x, y=None, epochs=1, **fit_kwargs):
        """Fits `model` (compiled) for `epochs`; asserts a finite loss.

        Returns the `History`. `fit_kwargs` go to `model.fit`
        (`batch_size`, `steps_per_epoch`, ...).
        """
        fit_kwargs.setdefault("verbose", 0)
        history = model.fit(x, y, epochs=epochs, **fit_kwargs)
        self.assertIn("loss", history.history)
        self.assertLen(history.history["loss"], epochs)
        self.assertTrue(
            np.all(np.isfinite(history.history["loss"])),
            msg=f"Non-finite loss: {history.history['loss']}",
        )
        return history

    def serve_in_fresh_process(self, model_dir, x, endpoint="serve"):
        """See the module-level `serve_in_fresh_process`."""
        return serve_in_fresh_process(model_dir, x, endpoint=endpoint)


def _repeat(data):
    while True:
        yield data


class _LayerModel(keras.Model):
    def __init__(self, layer):
        super().__init__(name="layer_test_model")
        self.layer = layer

    def call(self, x, training=False):
        return self.layer(x, training=training)


class _SumLoss(keras.losses.Loss):
    def __call__(self, y_true, y_pred, sample_weight=None):
        return keras.ops.sum(y_pred)
