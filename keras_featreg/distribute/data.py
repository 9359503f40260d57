"""The data side of `DistributedTrainer`: global batches split by replica.

Every worker reads the same dataset of global batches and keeps its
replicas' slices (`split_global_batches`), so a run on any number of
workers trains on the same global batches as one process; or a dataset
function shards the data per worker, the usual tf.distribute way.
"""

import tensorflow as tf

from keras_featreg.utils.validation import check_int


def split_global_batches(
    dataset: tf.data.Dataset, input_context: tf.distribute.InputContext
) -> tf.data.Dataset:
    """The rows of each global batch that this worker's replicas own.

    Replica `r` of `R` gets rows `[r * B // R, (r + 1) * B // R)` of every
    global batch of `B` rows: exactly the split `MirroredStrategy` makes, and
    the same global batch as a one-process run, whatever the number of
    workers. Every worker reads the whole dataset and keeps its replicas'
    slices, in replica order (the order `distribute_datasets_from_function`
    hands elements to the local replicas).

    Args:
        dataset: `tf.data.Dataset` of global batches (tensors or nested
            structures with the batch on axis 0).
        input_context: The `tf.distribute.InputContext` of this worker.

    Returns:
        A dataset of per-replica batches, `R / num_workers` per global batch.
    """
    replicas = input_context.num_replicas_in_sync
    workers = input_context.num_input_pipelines
    local = replicas // workers
    first = input_context.input_pipeline_id * local

    def split(*batch):
        batch = batch[0] if len(batch) == 1 else batch
        size = tf.shape(tf.nest.flatten(batch)[0])[0]
        bounds = [(size * (first + i)) // replicas for i in range(local + 1)]
        slices = [
            tf.nest.map_structure(
                lambda x, i=i: x[bounds[i] : bounds[i + 1]], batch
            )
            for i in range(local)
        ]
        pieces = tf.data.Dataset.from_tensors(slices[0])
        for piece in slices[1:]:
            pieces = pieces.concatenate(tf.data.Dataset.from_tensors(piece))
        return pieces

    return dataset.flat_map(split)


def element_spec(dataset):
    """The element spec of a dataset, or of a dataset function's dataset."""
    if isinstance(dataset, tf.data.Dataset):
        return dataset.element_spec
    return dataset(tf.distribute.InputContext()).element_spec


def resolve_steps_per_epoch(dataset, steps_per_epoch: int | None) -> int:
    """`steps_per_epoch`, or the length of a finite dataset of batches."""
    if steps_per_epoch is None:
        if not isinstance(dataset, tf.data.Dataset):
            raise ValueError(
                "`steps_per_epoch` is required with a dataset function. "
                "Received: steps_per_epoch=None"
            )
        steps_per_epoch = int(dataset.cardinality().numpy())
        if steps_per_epoch <= 0:
            raise ValueError(
                "The dataset's length is unknown or infinite: pass "
                "`steps_per_epoch`. Received: steps_per_epoch=None"
            )
    return check_int("steps_per_epoch", steps_per_epoch, minimum=1)


def distribute_dataset(
    strategy: tf.distribute.Strategy, dataset, skip: int
) -> tf.distribute.DistributedDataset:
    """The repeated per-replica batches after the first `skip` global ones.

    Args:
        strategy: The `tf.distribute.Strategy`.
        dataset: `tf.data.Dataset` of global batches (the same on every
            worker), or a function `dataset_fn(input_context)` returning
            this worker's dataset of per-replica batches.
        skip: Int, global batches already trained on (a resumed run).

    Returns:
        A distributed dataset for `strategy.run`.
    """
    if isinstance(dataset, tf.data.Dataset):

        def dataset_fn(context):
            batches = dataset.repeat().skip(skip)
            return split_global_batches(batches, context)

    else:

        def dataset_fn(context):
            local = context.num_replicas_in_sync // context.num_input_pipelines
            return dataset(context).repeat().skip(skip * local)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    return strategy.distribute_datasets_from_function(dataset_fn, options)
