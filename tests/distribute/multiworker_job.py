"""A tiny training job, run by the tests as each multi-worker process.

`python tests/distribute/multiworker_job.py --model metric --out DIR` trains
under `MultiWorkerMirroredStrategy` (workers from TF_CONFIG) with
`DistributedTrainer` and writes `DIR/worker_<index>.npz` (final weights) and
`DIR/start_<restart>_<index>.txt` (the step the run started from). The
tests import `build_model` and `global_batches` to train the same model in
one process with `model.fit`.
"""

import argparse
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

GLOBAL_BATCH = 16
NUM_ROWS = 64
DIM = 6


def global_batches(model_name: str):
    """The deterministic dataset of global batches (4 per epoch)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(NUM_ROWS, DIM)).astype("float32")
    if model_name == "vicreg":
        x_b = x + 0.3 * rng.normal(size=x.shape).astype("float32")
        data = (x, x_b)
    else:
        data = (x, rng.permutation(np.arange(NUM_ROWS) % 8).astype("int32"))
    return tf.data.Dataset.from_tensor_slices(data).batch(
        GLOBAL_BATCH, drop_remainder=True
    )


def build_model(model_name: str):
    """A compiled model; call inside the strategy scope."""
    import keras

    from keras_featreg import layers
    from keras_featreg import losses
    from keras_featreg import models
    from keras_featreg import regularizers
    from keras_featreg.losses.regularized import RegularizedLoss

    def dense(units, seed, **kwargs):
        return keras.layers.Dense(
            units,
            kernel_initializer=keras.initializers.GlorotUniform(seed),
            **kwargs,
        )

    if model_name == "vicreg":
        encoder = keras.Sequential(
            [keras.Input((DIM,)), dense(8, 1, activation="relu")]
        )
        # VICReg's projector with synchronized batch normalization.
        keras.utils.set_random_seed(0)
        projector = layers.build_projector((8, 8), synchronized=True)
        model = models.TwoViewModel(
            encoder, projector, loss=losses.VICRegLoss(), track_terms=False
        )
    else:
        model = keras.Sequential(
            [keras.Input((DIM,)), dense(8, 1), keras.layers.UnitNormalization()]
        )
        loss = RegularizedLoss(
            losses.TripletLoss(margin=0.2),
            regularizers.SVMaxRegularizer(factor=0.5),
        )
    if model_name == "vicreg":
        # SGD with momentum (a slot to checkpoint). Adam would turn the
        # rounding noise of the zero gradient of the Dense bias before the
        # batch normalization into lr-sized steps, different on every
        # device count (docs/distributed.md).
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    else:
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("metric", "vicreg"), required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--checkpoint-every", type=int, default=None)
    parser.add_argument("--kill-worker", type=int, default=1)
    parser.add_argument("--kill-at-step", type=int, default=None)
    args = parser.parse_args(argv)

    import keras
    import numpy as np
    import tensorflow as tf

    from keras_featreg import distribute

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(2)
    strategy = distribute.get_strategy("multiworker")
    _, index, _ = distribute.task_info()
    restart = int(os.environ.get("KERAS_FEATREG_RESTART", "0"))
    with strategy.scope():
        model = build_model(args.model)
    trainer = distribute.DistributedTrainer(
        model,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
    )
    os.makedirs(args.out, exist_ok=True)
    trainer.build(global_batches(args.model))
    start = trainer.restore()
    with open(os.path.join(args.out, f"start_{restart}_{index}.txt"), "w") as f:
        f.write(str(start))

    class Kill(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = int(trainer.step.numpy())
            if restart == 0 and index == args.kill_worker:
                if step == args.kill_at_step:
                    os.kill(os.getpid(), signal.SIGKILL)

    callbacks = [Kill()] if args.kill_at_step is not None else None
    trainer.fit(
        global_batches(args.model),
        epochs=args.epochs,
        verbose=0,
        callbacks=callbacks,
    )
    weights = [np.asarray(w) for w in model.weights]
    np.savez(os.path.join(args.out, f"worker_{index}.npz"), *weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
