"""Recall@k over a whole test set: leave-one-out exact nearest neighbours.

The standard metric-learning retrieval protocol (Song et al., 2016; used by
the SVMax paper, Proxy-Anchor and pytorch-metric-learning): every test sample
is a query, the database is every OTHER test sample, and recall@k is the
fraction of queries with at least one same-label sample among their k nearest
neighbours.

The search is exact and runs in bounded memory (the engine is
`keras_featreg.evaluation.top_k`); the embeddings are first brought to
scale ~1 (`keras_featreg.evaluation.arrays.as_scaled_embeddings`), so any
finite scale ranks as scale 1.
"""

from collections.abc import Sequence

import numpy as np

# as_embeddings and squared_norms: re-exported from their former home.
from keras_featreg.evaluation.arrays import as_embeddings as as_embeddings
from keras_featreg.evaluation.arrays import as_labels
from keras_featreg.evaluation.arrays import as_scaled_embeddings
from keras_featreg.evaluation.arrays import import_faiss
from keras_featreg.evaluation.arrays import l2_normalize
from keras_featreg.evaluation.arrays import squared_norms as squared_norms
from keras_featreg.evaluation.top_k import exact_neighbors
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int

_DISTANCES = ("euclidean", "cosine")
_BACKENDS = ("numpy", "faiss")


def recall_at_k(
    embeddings,
    labels,
    k: int | Sequence[int] = (1, 2, 4, 8),
    distance: str = "euclidean",
    chunk_size: int = 4096,
    backend: str = "numpy",
) -> dict[int, float]:
    """Leave-one-out Recall@k of a test set, the metric-learning protocol.

    Each sample queries all OTHER samples; a query scores 1 at `k` if any of
    its `k` nearest neighbours has its label:

    ```python
    neighbours = nearest_neighbors(embeddings, max(k))  # self excluded
    recall[k] = mean(any(labels[neighbours[:, :k]] == labels[:, None], 1))
    ```

    Notes:
    - A query whose class has no other sample cannot be answered and counts
      as a miss (standard practice: Proxy-Anchor and the SVMax paper divide
      by the number of test samples); it lowers every recall.
    - Ties in distance go to the lower sample index (the order of a stable
      sort), so results are deterministic.
    - Distances are computed in float32 (float64 inputs are cast), as faiss
      does, as `|x|^2 + |y|^2 - 2 x.y`. Neighbours whose distances differ by
      less than float32 rounding may swap. Embeddings whose largest |value|
      is outside `[2**-30, 2**30]` are first divided by a power of two near
      it, in their own precision (exact; rankings do not depend on the
      scale), so float64 embeddings of scale 1e-25 or 1e150 rank as at
      scale 1.
    - Memory is `n * (d + 2) * 4` bytes (a float32 copy of the embeddings)
      plus about `2 * chunk_size**2 * 4` bytes of block temporaries: on
      `60000 x 512` embeddings the call added 0.28 GiB to the process's
      peak RSS (benchmarks/bench_evaluation.py).

    Args:
        embeddings: Array-like of real numbers, shape `(n, d)` (higher ranks
            are flattened to `(n, -1)`): one embedding per test sample.
        labels: Array-like, shape `(n,)`: the class of each sample, compared
            with `==` (integers or strings).
        k: Int or sequence of ints, each in `[1, n - 1]`: the recall
            cut-offs. Defaults to `(1, 2, 4, 8)`.
        distance: String, `"euclidean"` (on the embeddings as given) or
            `"cosine"` (Euclidean on L2-normalized embeddings, which ranks
            exactly as cosine similarity; all-zero rows stay zero). The two
            agree on L2-normalized embeddings. Defaults to `"euclidean"`.
        chunk_size: Int, rows per block; bounds peak memory (see notes).
            Defaults to `4096`.
        backend: String, `"numpy"`, or `"faiss"` to search with
            `faiss.IndexFlatL2` as pytorch-metric-learning does (needs
            `faiss-cpu`; ties then follow faiss). Defaults to `"numpy"`.

    Returns:
        Dict mapping each `k` (int, in the order given) to its recall, a
        Python float in `[0, 1]`.

    Raises:
        ValueError: empty or non-finite embeddings, a single sample, labels
            of the wrong shape, or `k` outside `[1, n - 1]`.
        TypeError: non-numeric embeddings or a non-integer `k`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> embeddings = np.random.default_rng(0).normal(size=(100, 16))
    >>> labels = np.arange(100) % 10
    >>> keras_featreg.evaluation.recall_at_k(embeddings, labels, k=(1, 4))
    {1: 0.05, 4: 0.33}

    Reference:
    - [Song et al., 2016](https://arxiv.org/abs/1511.06452) (the protocol)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770) (SVMax)
    """
    x, _ = as_scaled_embeddings(embeddings)
    labels = as_labels(labels, x.shape[0])
    ks = _as_ks(k, x.shape[0])
    neighbours = nearest_neighbors(
        x, max(ks), distance=distance, chunk_size=chunk_size, backend=backend
    )
    hits = labels[neighbours] == labels[:, None]
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), hits.shape[1])
    return {kk: float(np.mean(first_hit < kk)) for kk in ks}


def nearest_neighbors(
    embeddings,
    k: int,
    distance: str = "euclidean",
    chunk_size: int = 4096,
    backend: str = "numpy",
) -> np.ndarray:
    """Exact leave-one-out k nearest neighbours of every sample.

    Returns, for each sample, the indices of the `k` closest OTHER samples,
    nearest first; equal distances go to the lower index (with
    `backend="numpy"`). Memory stays bounded: see `recall_at_k`, which
    documents the arguments.

    Returns:
        int64 NumPy array of shape `(n, k)`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> keras_featreg.evaluation.nearest_neighbors(x, k=1)[:, 0]
    array([1, 0, 1])
    """
    x, _ = as_scaled_embeddings(embeddings)
    n = x.shape[0]
    k = check_int("k", k, minimum=1)
    if k > n - 1:
        raise ValueError(
            f"`k` must be <= the number of other samples ({n - 1}). "
            f"Received: k={k}"
        )
    check_choice("distance", distance, _DISTANCES)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    check_choice("backend", backend, _BACKENDS)
    if distance == "cosine":
        x = l2_normalize(x)
    if backend == "faiss":
        return _faiss_neighbours(x, k)
    return exact_neighbors(x, k, chunk_size)


def _faiss_neighbours(x: np.ndarray, k: int) -> np.ndarray:
    faiss = import_faiss()
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, found = index.search(x, k + 1)
    # Drop each query's own index; if faiss did not return it (duplicates
    # at distance 0), drop the last neighbour, as pytorch-metric-learning.
    is_self = found == np.arange(x.shape[0])[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    return found[~is_self].reshape(x.shape[0], k).astype(np.int64)


def _as_ks(k, num_samples: int) -> list[int]:
    ks = [k] if np.ndim(k) == 0 else list(k)
    if not ks:
        raise ValueError(f"`k` must not be empty. Received: k={k!r}")
    ks = [check_int("k", kk, minimum=1) for kk in ks]
    if max(ks) > num_samples - 1:
        raise ValueError(
            f"`k` must be <= the number of other samples ({num_samples - 1}"
            f"; a query never retrieves itself). Received: k={k!r}"
        )
    return list(dict.fromkeys(ks))
