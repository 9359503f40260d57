"""DistributedTrainer: the strategy.run loop, checkpoints and resuming."""

import keras
import numpy as np
import tensorflow as tf

from keras_featreg import distribute
from tests import helpers as testing
from tests.distribute.multiworker_job import build_model
from tests.distribute.multiworker_job import global_batches


def mirrored():
    return distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])


def weights_of(model):
    return [np.asarray(w) for w in model.weights]


def keras_fit(name, epochs=2):
    """The single-device reference: Keras fit on the global batches."""
    model = build_model(name)
    history = model.fit(
        global_batches(name), epochs=epochs, verbose=0, shuffle=False
    )
    return history.history, weights_of(model)


class Crash(keras.callbacks.Callback):
    def __init__(self, trainer, at_step):
        super().__init__()
        self.trainer, self.at_step = trainer, at_step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.trainer.step.numpy()) == self.at_step:
            raise RuntimeError("simulated crash")


class SplitGlobalBatchesTest(testing.TestCase):
    def test_each_worker_keeps_its_replicas_rows(self):
        dataset = tf.data.Dataset.from_tensor_slices(
            (np.arange(12), np.arange(12) * 10)
        ).batch(6)
        # 2 workers x 2 replicas; worker 1 owns replicas 2 and 3.
        context = tf.distribute.InputContext(
            num_input_pipelines=2, input_pipeline_id=1, num_replicas_in_sync=4
        )
        pieces = list(distribute.split_global_batches(dataset, context))
        # Global batch of 6 over 4 replicas: bounds 0, 1, 3, 4, 6.
        expected = [[3], [4, 5], [9], [10, 11]]
        self.assertEqual([list(x.numpy()) for x, _ in pieces], expected)
        self.assertEqual(
            [list(y.numpy()) for _, y in pieces],
            [[10 * v for v in rows] for rows in expected],
        )


class DistributedTrainerTest(testing.TestCase):
    def test_mirrored_matches_keras_fit_on_one_device(self):
        single, expected = keras_fit("metric")
        strategy = mirrored()
        with strategy.scope():
            model = build_model("metric")
        history = distribute.DistributedTrainer(model).fit(
            global_batches("metric"), epochs=2, verbose=0
        )
        self.assertEqual(history["epoch"], [1, 2])
        self.assertEqual(history["step"], [4, 8])
        self.assertAllClose(history["loss"], single["loss"], atol=1e-5)
        for got, want in zip(weights_of(model), expected, strict=True):
            self.assertAllClose(got, want, atol=1e-5)
        # A dataset function (per-worker sharding) gives the same run.
        with strategy.scope():
            model = build_model("metric")
        trainer = distribute.DistributedTrainer(model)
        trainer.fit(
            lambda context: distribute.split_global_batches(
                global_batches("metric"), context
            ),
            epochs=2,
            steps_per_epoch=4,
            verbose=0,
        )
        for got, want in zip(weights_of(model), expected, strict=True):
            self.assertAllClose(got, want, atol=1e-5)

    def test_resumes_from_the_last_checkpoint(self):
        _, expected = keras_fit("vicreg")
        directory = self.get_temp_dir()
        model = build_model("vicreg")
        trainer = distribute.DistributedTrainer(
            model, checkpoint_dir=directory, checkpoint_every=2
        )
        with self.assertRaisesRegex(RuntimeError, "simulated crash"):
            trainer.fit(
                global_batches("vicreg"),
                epochs=2,
                verbose=0,
                callbacks=[Crash(trainer, at_step=3)],
            )
        self.assertEqual(
            tf.train.latest_checkpoint(directory).rsplit("-", 1)[1], "2"
        )
        # A new process: fresh model and optimizer, same directory.
        keras.utils.clear_session()
        model = build_model("vicreg")
        trainer = distribute.DistributedTrainer(
            model, checkpoint_dir=directory, checkpoint_every=2
        )
        with self.assertRaisesRegex(ValueError, "model.built=False"):
            trainer.restore()  # the projector has no variables yet
        trainer.build(global_batches("vicreg"))
        self.assertEqual(trainer.restore(), 2)
        history = trainer.fit(global_batches("vicreg"), epochs=2, verbose=0)
        self.assertEqual(history["step"], [4, 8])
        self.assertEqual(int(model.optimizer.iterations.numpy()), 8)
        for got, want in zip(weights_of(model), expected, strict=True):
            self.assertAllClose(got, want, atol=1e-6)
        # Done: fitting again trains nothing.
        self.assertEqual(
            trainer.fit(global_batches("vicreg"), epochs=2, verbose=0),
            {"epoch": [], "step": []},
        )

    def test_train_multi_worker(self):
        # The one-call form (here with the default strategy).
        model, history = distribute.train_multi_worker(
            lambda: build_model("metric"),
            global_batches("metric"),
            epochs=1,
            strategy="default",
            verbose=0,
        )
        self.assertEqual(history["step"], [4])
        self.assertEqual(int(model.optimizer.iterations.numpy()), 4)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(TypeError, "Received: model="):
            distribute.DistributedTrainer("model")
        uncompiled = keras.Sequential(
            [keras.Input((2,)), keras.layers.Dense(1)]
        )
        with self.assertRaisesRegex(ValueError, "model.optimizer=None"):
            distribute.DistributedTrainer(uncompiled)
        model = build_model("metric")
        with self.assertRaisesRegex(ValueError, "strategy.scope"):
            distribute.DistributedTrainer(model, strategy=mirrored())
        with self.assertRaisesRegex(ValueError, "Received: checkpoint_every=0"):
            distribute.DistributedTrainer(model, checkpoint_every=0)
        trainer = distribute.DistributedTrainer(model)
        with self.assertRaisesRegex(ValueError, "steps_per_epoch=None"):
            trainer.fit(lambda context: global_batches("metric"))
        with self.assertRaisesRegex(ValueError, "steps_per_epoch=None"):
            trainer.fit(global_batches("metric").repeat())
        with self.assertRaisesRegex(ValueError, "Received: epochs=0"):
            trainer.fit(global_batches("metric"), epochs=0)
