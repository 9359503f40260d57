"""NMI of a test set: k-means with one cluster per class, then NMI.

The clustering half of the metric-learning evaluation protocol (Song et al.,
2016; the SVMax paper's `NMI = I(Omega, C) / sqrt(H(Omega) H(C))`). k-means
runs in NumPy with BLAS matmuls, in bounded memory, and scales to Stanford
Online Products (60,000 x 512 embeddings, 11,316 clusters).

The k-means is Lloyd's algorithm, computed exactly but with less work
(`keras_featreg.evaluation.lloyd`). The embeddings are first brought to
scale ~1 (`keras_featreg.evaluation.arrays.as_scaled_embeddings`): a
clustering does not depend on the scale, and float32 could not hold the
squares of embeddings of scale 1e-25 or 1e25.
"""

import numpy as np

from keras_featreg.evaluation.arrays import as_labels
from keras_featreg.evaluation.arrays import as_scaled_embeddings
from keras_featreg.evaluation.arrays import import_faiss
from keras_featreg.evaluation.lloyd import Lloyd
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int

_INITS = ("random", "k-means++")
_BACKENDS = ("numpy", "faiss")
_AVERAGE_METHODS = ("geometric", "arithmetic", "min", "max")


def nmi(
    embeddings,
    labels,
    num_clusters: int | None = None,
    num_iterations: int = 20,
    init: str | None = None,
    seed: int = 0,
    average_method: str = "geometric",
    chunk_size: int = 2048,
    backend: str = "numpy",
    num_restarts: int = 10,
) -> float:
    """NMI between the labels and a k-means clustering of the embeddings.

    ```python
    clusters, _ = kmeans(embeddings, num_clusters=len(unique(labels)))
    nmi = I(labels, clusters) / sqrt(H(labels) * H(clusters))
    ```

    The SVMax paper (Appendix B.1) normalizes by the geometric mean of the
    entropies, the default here. scikit-learn's
    `normalized_mutual_info_score` defaults to the arithmetic mean; pass
    `average_method="arithmetic"` to match it.

    Initialization. By default k-means runs `num_restarts=10` times from
    k-means++ seeds and keeps the run of lowest inertia (sum of squared
    distances to the centers), as scikit-learn's `KMeans(n_init=10)` does: a
    single run from random samples often merges two classes and splits
    another, even on well-separated classes (6 Gaussian clusters of 40
    points, centers 10 standard deviations apart: NMI 0.90, 1.0, 0.84, 0.90,
    0.81 for seeds 0-4, where the restarted k-means++ default and
    scikit-learn give 1.0), so the score measured initialization noise. `seed`
    fixes the runs. The former default, one run from random samples (faiss'
    default, fast on many clusters: k-means++ makes `num_clusters`
    sequential passes over the data per run), is
    `init="random", num_restarts=1`.

    Args:
        embeddings: Array-like of real numbers, shape `(n, d)`: one embedding
            per test sample (Euclidean k-means on the values as given;
            L2-normalize them first for the usual protocol).
        labels: Array-like, shape `(n,)`: the class of each sample.
        num_clusters: Int in `[1, n]`, or `None` for the number of distinct
            labels. Defaults to `None`.
        num_iterations: Int >= 0, Lloyd iterations (center updates). Defaults
            to `20`, as in faiss and pytorch-metric-learning.
        init: String or `None`: `"random"` (distinct random samples, as
            faiss does) or `"k-means++"` (Arthur & Vassilvitskii, 2007;
            better, but costs `num_clusters` sequential passes over the data
            per run). Defaults to `None`: `"k-means++"`, or `"random"` with
            `backend="faiss"` (the only one faiss offers).
        seed: Int >= 0, seeds the initialization. Defaults to `0`.
        average_method: String, how the entropies normalize the mutual
            information: `"geometric"`, `"arithmetic"`, `"min"` or `"max"`.
            Defaults to `"geometric"`.
        chunk_size: Int, samples per block of the assignment step; peak
            memory holds `chunk_size x num_clusters` float32 scores besides
            a float32 copy of the embeddings (at `60000 x 512` and 11,316
            clusters the call added 0.40 GiB to the peak RSS). Defaults to
            `2048`.
        backend: String, `"numpy"`, or `"faiss"` for `faiss.Kmeans` (needs
            `faiss-cpu`; random init only). Defaults to `"numpy"`.
        num_restarts: Int >= 1, k-means runs (each from its own
            initialization); the one of lowest inertia is kept. Defaults to
            `10`, as scikit-learn's `n_init=10` (`nredo` with faiss).

    Returns:
        Python float in `[0, 1]`.

    Raises:
        ValueError: empty or non-finite embeddings, labels of the wrong
            shape, or an argument out of range.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> embeddings = np.random.default_rng(0).normal(size=(100, 16))
    >>> labels = np.arange(100) % 10
    >>> keras_featreg.evaluation.nmi(embeddings, labels)  # noise: low NMI
    0.266...

    Reference:
    - [Song et al., 2016](https://arxiv.org/abs/1511.06452) (the protocol)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770) (SVMax)
    """
    x, _ = as_scaled_embeddings(embeddings)  # the scale cannot matter
    labels = as_labels(labels, x.shape[0])
    if num_clusters is None:
        num_clusters = len(np.unique(labels))
    if init is None:
        init = "random" if backend == "faiss" else "k-means++"
    clusters, _ = kmeans(
        x,
        num_clusters,
        num_iterations=num_iterations,
        init=init,
        seed=seed,
        chunk_size=chunk_size,
        backend=backend,
        num_restarts=num_restarts,
    )
    return normalized_mutual_information(labels, clusters, average_method)


def normalized_mutual_information(
    labels, clusters, average_method: str = "geometric"
) -> float:
    """NMI between two labelings of the same samples.

    ```python
    nmi = I(labels, clusters) / mean(H(labels), H(clusters))
    ```

    with natural logarithms (the ratio does not depend on the base) and the
    mean chosen by `average_method` (geometric: `sqrt(H_1 * H_2)`). Matches
    `sklearn.metrics.normalized_mutual_info_score`, including its conventions:
    two single-group labelings score 1, and one single-group labeling
    against a finer one scores 0. Runs in `O(n log n)` time and `O(n)`
    memory (no dense contingency table).

    Args:
        labels: Array-like, shape `(n,)`: the reference labeling.
        clusters: Array-like, shape `(n,)`: the other labeling.
        average_method: String, `"geometric"`, `"arithmetic"`, `"min"` or
            `"max"`. Defaults to `"geometric"`.

    Returns:
        Python float in `[0, 1]`.

    Example:

    >>> import keras_featreg
    >>> keras_featreg.evaluation.normalized_mutual_information(
    ...     [0, 0, 1, 1], [1, 1, 0, 0])
    1.0
    """
    check_choice("average_method", average_method, _AVERAGE_METHODS)
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0:
        raise ValueError(
            "`labels` must be a non-empty 1-D array. "
            f"Received: labels.shape={labels.shape}"
        )
    clusters = as_labels(clusters, labels.size, name="clusters")
    _, rows = np.unique(labels, return_inverse=True)
    _, cols = np.unique(clusters, return_inverse=True)
    rows, cols = rows.ravel(), cols.ravel()
    num_rows, num_cols = rows.max() + 1, cols.max() + 1
    if num_rows == num_cols == 1:
        return 1.0
    if num_rows == 1 or num_cols == 1:
        return 0.0  # no information shared with a single group
    # The arithmetic of scikit-learn's mutual_info_score and entropy.
    n = labels.size
    row_counts = np.bincount(rows)
    col_counts = np.bincount(cols)
    _, joint_index, joint = np.unique(
        rows.astype(np.int64) * num_cols + cols,
        return_index=True,
        return_counts=True,
    )
    outer = row_counts[rows[joint_index]].astype(np.int64) * col_counts[
        cols[joint_index]
    ].astype(np.int64)
    log_outer = -np.log(outer) + 2.0 * np.log(n)
    probability = joint / n
    terms = probability * (np.log(joint) - np.log(n)) + probability * log_outer
    terms = np.where(np.abs(terms) < np.finfo(np.float64).eps, 0.0, terms)
    mutual_information = max(float(terms.sum()), 0.0)
    if mutual_information == 0.0:
        return 0.0
    entropies = [_entropy(row_counts), _entropy(col_counts)]
    if average_method == "geometric":
        normalizer = np.sqrt(entropies[0] * entropies[1])
    elif average_method == "arithmetic":
        normalizer = np.mean(entropies)
    elif average_method == "min":
        normalizer = min(entropies)
    else:
        normalizer = max(entropies)
    normalizer = max(float(normalizer), np.finfo(np.float64).eps)
    return float(np.clip(mutual_information / normalizer, 0.0, 1.0))


def _entropy(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    total = counts.sum()
    return float(-np.sum(counts / total * (np.log(counts) - np.log(total))))


def kmeans(
    embeddings,
    num_clusters: int,
    num_iterations: int = 20,
    init: str = "random",
    seed: int = 0,
    chunk_size: int = 2048,
    backend: str = "numpy",
    num_restarts: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean k-means (Lloyd's algorithm), exact and in bounded memory.

    Each iteration assigns every sample to its nearest center (ties to the
    lower center index) and moves each center to the mean of its samples; a
    final assignment follows the last update, as in faiss. An emptied
    cluster takes the sample farthest from its center (as scikit-learn
    does; samples alone in their cluster are not taken). The result equals
    plain Lloyd iterations up to float32 rounding of near-ties; see the
    module docstring for how work is skipped. Scores are float32, sums for
    the means float64. `nmi` documents the arguments.

    With `num_restarts > 1` the runs start from seeds derived from `seed`
    (the first run from `seed` itself, so `num_restarts=1` is one such run)
    and the run of lowest inertia (sum of squared distances of the samples
    to their centers, in float64; ties to the earlier run) is returned.
    Here `num_restarts` defaults to `1` and `init` to `"random"` (one run,
    as faiss); `nmi` defaults to 10 k-means++ runs.

    Embeddings whose largest |value| is outside `[2**-30, 2**30]` are
    clustered after dividing them by a power of two near it (exact; the
    assignments do not depend on the scale), and the centers are scaled
    back.

    Returns:
        Tuple `(assignments, centers)`: int64 `(n,)` cluster indices and
        float32 `(num_clusters, d)` centers.

    Raises:
        ValueError: invalid arguments or embeddings, or (float64) embeddings
            whose centers float32 cannot hold: a largest |value| beyond
            ~3.4e38 or below ~1.2e-38 (`nmi` needs no centers and takes
            them).

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> x = np.array([[0.0], [0.1], [5.0], [5.1]])
    >>> assignments, centers = keras_featreg.evaluation.kmeans(x, 2)
    >>> assignments
    array([0, 0, 1, 1])
    """
    x, scale = as_scaled_embeddings(embeddings)
    n = x.shape[0]
    num_clusters = check_int("num_clusters", num_clusters, minimum=1)
    if num_clusters > n:
        raise ValueError(
            f"`num_clusters` must be <= the number of samples ({n}). "
            f"Received: num_clusters={num_clusters}"
        )
    num_iterations = check_int("num_iterations", num_iterations, minimum=0)
    check_choice("init", init, _INITS)
    seed = check_int("seed", seed, minimum=0)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    check_choice("backend", backend, _BACKENDS)
    num_restarts = check_int("num_restarts", num_restarts, minimum=1)
    if backend == "faiss":
        if init != "random":
            raise ValueError(
                '`backend="faiss"` supports `init="random"` only. '
                f"Received: init={init!r}"
            )
        assignments, centers = _faiss_kmeans(
            x, num_clusters, num_iterations, seed, num_restarts
        )
    else:
        lloyd = Lloyd(x, chunk_size)
        best = None
        for run_seed in _restart_seeds(seed, num_restarts):
            run = lloyd.run(num_clusters, num_iterations, init, run_seed)
            run_inertia = inertia(x, *run, chunk_size=chunk_size)
            if best is None or run_inertia < best[0]:
                best = (run_inertia, run)
        assignments, centers = best[1]
    return assignments, _unscaled(centers, scale)


def _restart_seeds(seed: int, num_restarts: int) -> list[int]:
    """`seed`, then seeds derived from it, one per run."""
    derived = np.random.SeedSequence(seed).generate_state(num_restarts - 1)
    return [seed] + [int(value) for value in derived]


def inertia(
    x: np.ndarray,
    assignments: np.ndarray,
    centers: np.ndarray,
    chunk_size: int = 2048,
) -> float:
    """Sum of squared distances of the samples to their centers (float64)."""
    total = 0.0
    for start in range(0, len(x), chunk_size):
        block = slice(start, start + chunk_size)
        difference = x[block].astype(np.float64) - centers[
            assignments[block]
        ].astype(np.float64)
        total += float(np.sum(np.square(difference)))
    return total


def _unscaled(centers: np.ndarray, scale: float) -> np.ndarray:
    """The float32 centers at the embeddings' scale, or why they can't be."""
    if scale == 1.0:
        return centers
    float32 = np.finfo(np.float32)
    with np.errstate(over="ignore"):
        unscaled = (centers.astype(np.float64) * scale).astype(np.float32)
    if scale < float32.tiny or not np.isfinite(unscaled).all():
        raise ValueError(
            "`kmeans` returns float32 centers, which cannot hold the "
            "centers of `embeddings` at their scale (float32 holds "
            f"{float32.tiny:.2g} to {float32.max:.2g}); rescale them (`nmi` "
            "needs no centers). Received: embeddings with max "
            f"|value|~{scale:.3g}"
        )
    return unscaled


def _faiss_kmeans(x, num_clusters, num_iterations, seed, num_restarts=1):
    faiss = import_faiss()
    n, d = x.shape
    clustering = faiss.Kmeans(
        d,
        num_clusters,
        niter=num_iterations,
        seed=seed,
        nredo=num_restarts,
        max_points_per_centroid=n,  # no subsampling: the same problem
    )
    clustering.train(x)
    _, assignments = clustering.index.search(x, 1)
    return assignments[:, 0].astype(np.int64), clustering.centroids
