"""The SVMax paper's retrieval benchmarks through tensorflow-datasets.

CUB-200-2011 (`caltech_birds2011`), Cars196 (`cars196`) and Stanford Online
Products (`stanford_online_products`) with the standard zero-shot protocol:
tfds' own train and test splits are merged, the first half of the classes
trains and the second half tests. tfds labels are the datasets' 1-based
class ids minus one, so the train classes are `0 .. num_train_classes - 1`
and the test labels keep their ids (`num_train_classes ..`).

| name                       | label key  | classes | train    | test          |
| -------------------------- | ---------- | ------- | -------- | ------------- |
| `caltech_birds2011`        | `label`    | 200     | 0-99     | 100-199       |
| `cars196`                  | `label`    | 196     | 0-97     | 98-195        |
| `stanford_online_products` | `class_id` | 22,634  | 0-11,317 | 11,318-22,633 |
"""

import dataclasses

import numpy as np
import tensorflow as tf

from keras_featreg.data.image_preprocessing import retrieval_preprocess
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_choice


@dataclasses.dataclass(frozen=True)
class RetrievalDatasetInfo:
    """Where a retrieval benchmark lives in tfds and how it is split."""

    tfds_name: str
    label_key: str
    num_classes: int
    num_train_classes: int


RETRIEVAL_DATASETS = {
    "caltech_birds2011": RetrievalDatasetInfo(
        "caltech_birds2011", "label", 200, 100
    ),
    "cars196": RetrievalDatasetInfo("cars196", "label", 196, 98),
    "stanford_online_products": RetrievalDatasetInfo(
        "stanford_online_products", "class_id", 22634, 11318
    ),
}
_ALIASES = {
    "cub": "caltech_birds2011",
    "cub200": "caltech_birds2011",
    "cars": "cars196",
    "sop": "stanford_online_products",
}


def get_retrieval_dataset_info(name: str) -> RetrievalDatasetInfo:
    """Returns the `RetrievalDatasetInfo` of a tfds name or alias.

    Args:
        name: String, `"caltech_birds2011"` (alias `"cub"`, `"cub200"`),
            `"cars196"` (`"cars"`) or `"stanford_online_products"`
            (`"sop"`).

    Returns:
        The frozen `RetrievalDatasetInfo(tfds_name, label_key, num_classes,
        num_train_classes)`.
    """
    choices = sorted(RETRIEVAL_DATASETS) + sorted(_ALIASES)
    check_choice("name", name, choices)
    return RETRIEVAL_DATASETS[_ALIASES.get(name, name)]


def _missing_data_message(info, data_dir) -> str:
    where = data_dir or "$TFDS_DATA_DIR or ~/tensorflow_datasets"
    target = data_dir or "DIR"
    name = info.tfds_name
    return (
        f"The `{name}` dataset is not prepared in {where}. Prepare it once "
        f"(needs internet and disk space): `tfds build {name} "
        f"--data_dir={target}`, then pass `data_dir='{target}'`; or call "
        "this loader with `download=True`. If the download URLs are "
        "unreachable, put the original archives (file names as in tfds' "
        f"checksums file) in a folder MANUAL and run `tfds build {name} "
        f"--data_dir={target} --manual_dir=MANUAL`."
    )


def _encoded_dataset(name, split, data_dir, download) -> tf.data.Dataset:
    """The zero-shot split as a dataset of (encoded image, label)."""
    info = get_retrieval_dataset_info(name)
    check_choice("split", split, ("train", "test"))
    check_bool("download", download)
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError(
            "Loading retrieval datasets needs tensorflow-datasets, which is "
            "not installed. Install it with `pip install "
            "'keras-featreg[data]'` (or `pip install tensorflow-datasets`)."
        ) from error

    builder = tfds.builder(info.tfds_name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    try:
        dataset = builder.as_dataset(
            split="train+test",
            decoders={"image": tfds.decode.SkipDecoding()},
            shuffle_files=False,
        )
    except AssertionError as error:  # tfds: "could not find data in ..."
        raise FileNotFoundError(
            _missing_data_message(info, data_dir)
        ) from error

    num_train = info.num_train_classes
    label_key = info.label_key
    if split == "train":
        dataset = dataset.filter(lambda ex: ex[label_key] < num_train)
    else:
        dataset = dataset.filter(lambda ex: ex[label_key] >= num_train)
    dataset = dataset.map(
        lambda ex: (ex["image"], tf.cast(ex[label_key], tf.int64)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return dataset


def load_retrieval_dataset(
    name: str,
    split: str = "train",
    image_size: int = 224,
    data_dir: str | None = None,
    training: bool | None = None,
    normalization: str = "torch",
    download: bool = False,
) -> tf.data.Dataset:
    """Loads a retrieval benchmark's zero-shot split, preprocessed.

    tfds' train and test splits are merged; `split="train"` keeps the first
    `num_train_classes` classes (CUB 100, Cars 98, SOP 11,318), `"test"`
    the rest, with their original label ids. Images go through
    `retrieval_preprocess(image_size, training, normalization)`: random
    resized crop and flip when training, resize to
    `image_size * 256 / 224` then center crop otherwise.

    The dataset is neither shuffled nor batched; for P x K training
    batches use `load_retrieval_encoded` with `pk_dataset` instead.

    Args:
        name: String, `"caltech_birds2011"` (or `"cub"`, `"cub200"`),
            `"cars196"` (or `"cars"`), `"stanford_online_products"` (or
            `"sop"`).
        split: String, `"train"` or `"test"` (the zero-shot class halves).
            Defaults to `"train"`.
        image_size: Int, output height and width. Defaults to `224`.
        data_dir: String or `None`, the tfds data directory. Defaults to
            `None` (tfds' default, `$TFDS_DATA_DIR` or
            `~/tensorflow_datasets`).
        training: Bool or `None`, whether to augment. Defaults to `None`:
            `split == "train"`.
        normalization: String, `"torch"`, `"caffe"`, `"tf"` or `"none"`,
            see `normalize_image`. Defaults to `"torch"`.
        download: Bool, whether to download and prepare missing data (needs
            internet). Defaults to `False`.

    Returns:
        A `tf.data.Dataset` of `(image, label)`: float32
        `(image_size, image_size, 3)` and int64 scalar.

    Raises:
        FileNotFoundError: if the data is not prepared in `data_dir`; the
            message says how to prepare it.

    Example:

    >>> import keras_featreg
    >>> keras_featreg.data.get_retrieval_dataset_info("cub").num_classes
    200
    >>> # The next lines need the prepared dataset (see above).
    >>> test = keras_featreg.data.load_retrieval_dataset(
    ...     "cub", "test")  # doctest: +SKIP
    >>> model = keras_featreg.models.build_embedding_model((224, 224, 3))
    >>> embeddings = model.predict(
    ...     test.map(lambda x, y: x).batch(256))  # doctest: +SKIP

    Reference:
    - [Oh Song et al., 2016](https://arxiv.org/abs/1511.06452) (protocol);
      [Taha et al., 2021](https://arxiv.org/abs/2103.02770).
    """
    if training is None:
        training = split == "train"
    preprocess = retrieval_preprocess(image_size, training, normalization)
    dataset = _encoded_dataset(name, split, data_dir, download)
    return dataset.map(
        lambda image, label: (preprocess(image), label),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def load_retrieval_encoded(
    name: str,
    split: str = "train",
    data_dir: str | None = None,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a zero-shot split into memory as encoded (JPEG) bytes.

    Keeping the compressed files rather than decoded pixels makes the
    random access that `pk_dataset` needs cheap in memory (the SOP train
    half, 59,551 images, is roughly half of its 3.1 GB archive); decode
    with `retrieval_preprocess` as its `preprocess`.

    Args:
        name: String, dataset name or alias (see `load_retrieval_dataset`).
        split: String, `"train"` or `"test"`. Defaults to `"train"`.
        data_dir: String or `None`, the tfds data directory. Defaults to
            `None` (tfds' default).
        download: Bool, whether to download and prepare missing data.
            Defaults to `False`.

    Returns:
        `(images, labels)`: `images` a 1-D object array of `bytes` (encoded
        images), `labels` a 1-D `int64` array.

    Raises:
        FileNotFoundError: if the data is not prepared in `data_dir`.

    Example:

    >>> import keras_featreg
    >>> # These lines need the prepared dataset (see above).
    >>> images, labels = keras_featreg.data.load_retrieval_encoded(
    ...     "cars")  # doctest: +SKIP
    >>> train = keras_featreg.data.pk_dataset(  # doctest: +SKIP
    ...     images, labels, p=24, k=6, seed=0,
    ...     preprocess=keras_featreg.data.retrieval_preprocess(224, True))
    >>> steps = keras_featreg.data.PKSampler(
    ...     labels, 24, 6).steps_per_epoch  # doctest: +SKIP
    """
    dataset = _encoded_dataset(name, split, data_dir, download)
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    encoded = np.empty(len(images), dtype=object)
    encoded[:] = images
    return encoded, np.asarray(labels, dtype=np.int64)
