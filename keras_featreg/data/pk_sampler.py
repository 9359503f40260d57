"""P x K class-balanced batches: P classes, K instances of each per batch."""

import itertools
from collections.abc import Iterator

import numpy as np

from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int


def _max_steps(chunks_per_class: np.ndarray, p: int) -> int:
    """Largest B with sum(min(chunks, B)) >= p * B: the most P-class batches.

    A batch takes one chunk from each of p distinct classes, so a class can
    feed at most one chunk per batch; B batches are feasible exactly when
    the capped chunk counts add up to p * B. The left side minus p * B is
    concave in B and zero at B = 0, so the feasible B form an interval.
    """
    low, high = 1, int(chunks_per_class.sum()) // p
    while low < high:
        mid = (low + high + 1) // 2
        if np.minimum(chunks_per_class, mid).sum() >= p * mid:
            low = mid
        else:
            high = mid - 1
    return low


class PKSampler:
    """Yields index batches of `p` classes with `k` instances of each.

    The sampler behind metric-learning batches (the SVMax paper uses
    b = 144: p = 24, k = 6 for triplet; p = 72, k = 2 for N-pair and
    angular; p = 36, k = 4 for contrastive). Each epoch:

    1. Every class's instances are shuffled and cut into chunks of `k`; a
       last partial chunk is completed with other instances of the same
       class, so each instance is visited at least once.
    2. The chunks are dealt into `steps_per_epoch` batches of `p` chunks
       from `p` distinct classes, choosing classes at random with
       probability proportional to their chunks left (a class that must
       appear in every remaining batch is always taken). A class with more
       chunks than batches, and at most `p - 1` leftover chunks, are
       dropped at random for this epoch.

    Each epoch is thus close to one pass over the data, reshuffled, and
    `epoch(i)` depends only on `(seed, i)`, so runs are reproducible.
    A batch is laid out class by class: rows `j * k` to `j * k + k - 1`
    share a class.

    Classes with fewer than `k` instances: with `small_classes="replace"`
    (the default, so that e.g. Stanford Online Products' many 2-5 image
    classes still train) all their instances are used and the chunk is
    filled by sampling them again with replacement, so such a chunk
    repeats instances. With `small_classes="skip"` those classes are
    never sampled.

    Args:
        labels: 1-D array of class ids (any sortable type), one per
            example. Only the labels are needed, never the images.
        p: Int, number of distinct classes per batch, `1 <= p <=` number
            of (usable) classes.
        k: Int, number of instances per class in a batch, `>= 1`.
        seed: Int or `None`, seed of the shuffles. Defaults to `None`: a
            random seed drawn once at construction.
        small_classes: `"replace"` or `"skip"`, what to do with classes
            having fewer than `k` instances (see above). Defaults to
            `"replace"`.

    Attributes:
        steps_per_epoch: Int, batches per epoch (fixed, seed-independent).
        batch_size: Int, `p * k`.
        classes: 1-D array of the classes that can be sampled.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> labels = np.repeat(np.arange(30), 8)  # 30 classes of 8 images
    >>> images = np.zeros((240, 4, 4, 1), "float32")
    >>> sampler = keras_featreg.data.PKSampler(labels, p=24, k=6, seed=0)
    >>> batches = sampler.epoch(0)  # (sampler.steps_per_epoch, 144) ints
    >>> batches.shape[1]
    144
    >>> for indices in sampler:  # endless: epoch 0, epoch 1, ...
    ...     x, y = images[indices], labels[indices]
    ...     break
    >>> x.shape, len(np.unique(y))
    ((144, 4, 4, 1), 24)

    Reference:
    - [Hermans et al., 2017](https://arxiv.org/abs/1703.07737) (P x K
      batches); [Taha et al., 2021](https://arxiv.org/abs/2103.02770).
    """

    def __init__(
        self,
        labels,
        p: int,
        k: int,
        seed: int | None = None,
        small_classes: str = "replace",
    ) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] == 0:
            raise ValueError(
                "`labels` must be a non-empty 1-D array. "
                f"Received: labels.shape={labels.shape}"
            )
        self.p = check_int("p", p, minimum=1)
        self.k = check_int("k", k, minimum=1)
        self.small_classes = check_choice(
            "small_classes", small_classes, ("replace", "skip")
        )
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)
        self.seed = check_int("seed", seed, minimum=0)

        classes, inverse = np.unique(labels, return_inverse=True)
        counts = np.bincount(inverse)
        members = np.split(
            np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1]
        )
        keep = counts >= (self.k if small_classes == "skip" else 1)
        self.classes = classes[keep]
        self._members = [members[i] for i in np.flatnonzero(keep)]
        if self.p > len(self.classes):
            which = (
                f"classes with at least k={self.k} instances"
                if small_classes == "skip"
                else "classes"
            )
            raise ValueError(
                f"`p` must be at most the number of {which} "
                f"({len(self.classes)}). Received: p={self.p}"
            )
        self._chunks = -(-counts[keep] // self.k)  # ceil(count / k)
        self.batch_size = self.p * self.k
        self.steps_per_epoch = _max_steps(self._chunks, self.p)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def epoch(self, index: int) -> np.ndarray:
        """Returns epoch `index` as an `int64` array `(steps, p * k)`."""
        index = check_int("index", index, minimum=0)
        rng = np.random.default_rng([self.seed, index])
        p, k, steps = self.p, self.k, self.steps_per_epoch

        # 1. Shuffled chunks of k instances per class.
        chunks = []
        for members in self._members:
            order = rng.permutation(members)
            missing = -order.size % k
            if missing:
                # Other instances of the class, or repeats if it is small.
                full = order[: order.size - order.size % k]
                if full.size:
                    extra = rng.choice(full, missing, replace=False)
                else:
                    extra = rng.choice(order, missing, replace=True)
                order = np.concatenate([order, extra])
            chunks.append(order.reshape(-1, k))
        offsets = np.cumsum([0] + [len(c) for c in chunks[:-1]])
        table = np.concatenate(chunks)

        # 2. Keep exactly p * steps chunks, at most `steps` per class.
        remaining = np.minimum(self._chunks, steps)
        excess = int(remaining.sum()) - p * steps
        if excess:
            owners = np.repeat(np.arange(remaining.size), remaining)
            dropped = rng.choice(owners.size, excess, replace=False)
            remaining -= np.bincount(owners[dropped], minlength=remaining.size)

        # 3. Deal them: a class with a chunk left for every remaining batch
        # is forced in; the others are drawn without replacement with
        # probability proportional to their chunks left (Gumbel top-p).
        # Invariant: chunks left == p * batches left, none above the batches
        # left, so at most p classes are forced and at least p can be drawn.
        used = np.zeros_like(remaining)
        batches = np.empty((steps, p * k), dtype=np.int64)
        for step in range(steps):
            keys = np.full(remaining.size, -np.inf)
            available = np.flatnonzero(remaining)
            keys[available] = np.log(remaining[available]) + rng.gumbel(
                size=available.size
            )
            keys[remaining == steps - step] = np.inf
            chosen = np.argpartition(-keys, p - 1)[:p]
            rng.shuffle(chosen)
            batches[step] = table[offsets[chosen] + used[chosen]].reshape(-1)
            used[chosen] += 1
            remaining[chosen] -= 1
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yields index batches `(p * k,)` endlessly, epoch after epoch."""
        for index in itertools.count():
            yield from self.epoch(index)
