"""MAP@R and R-precision: Musgrave et al.'s retrieval metrics.

"A Metric Learning Reality Check" (Musgrave, Belongie and Lim, 2020) argues
that Recall@k saturates and hides differences between methods, and reports
MAP@R and R-precision instead (pytorch-metric-learning's headline metrics).
For a query with `R` other samples of its class, both read its `R` nearest
neighbours (the query itself excluded, as in `recall_at_k`):

```python
hits = labels[nearest_neighbors(x, R)] == label        # R booleans
r_precision = sum(hits) / R
map_at_r = sum(hits[i] * precision_at[i] for i in range(R)) / R
precision_at[i] = sum(hits[: i + 1]) / (i + 1)
```

R-precision is the precision at `R`; MAP@R is the mean average precision
truncated at `R`, which also rewards putting the hits first. Both are 1 when
every class forms its own tight cluster. The neighbours come from
`keras_featreg.evaluation.nearest_neighbors` (exact, bounded memory; ties to
the lower sample index).
"""

import numpy as np

from keras_featreg.evaluation.arrays import as_labels
from keras_featreg.evaluation.arrays import as_scaled_embeddings
from keras_featreg.evaluation.retrieval import nearest_neighbors


def map_at_r(
    embeddings,
    labels,
    distance: str = "euclidean",
    chunk_size: int = 4096,
    backend: str = "numpy",
) -> float:
    """Mean average precision at R over a test set (Musgrave et al., 2020).

    ```python
    R = number of OTHER samples with the query's label
    hits = labels[nearest_neighbors(embeddings, R)] == label  # self excluded
    ap_at_r = sum(hits[i] * mean(hits[: i + 1]) for i in range(R)) / R
    map_at_r = mean over queries of ap_at_r
    ```

    Queries alone in their class (`R = 0`) have no relevant sample and are
    left out of the mean, as in pytorch-metric-learning (`recall_at_k`
    counts them as misses instead). Ties in distance go to the lower sample
    index; see `recall_at_k` for the distances, memory and the arguments.

    Args:
        embeddings: Array-like of real numbers, shape `(n, d)`.
        labels: Array-like, shape `(n,)`: the class of each sample.
        distance: String, `"euclidean"` or `"cosine"`. Defaults to
            `"euclidean"`.
        chunk_size: Int, rows per block of the search. Defaults to `4096`.
        backend: String, `"numpy"` or `"faiss"`. Defaults to `"numpy"`.

    Returns:
        Python float in `[0, 1]`.

    Raises:
        ValueError: invalid embeddings or labels, or no class with two
            samples (no query has a relevant sample).

    Example:

    >>> import keras_featreg
    >>> x = [[0.0], [1.0], [2.0], [3.0]]
    >>> keras_featreg.evaluation.map_at_r(x, [0, 0, 1, 1])
    0.75

    Reference:
    - [Musgrave et al., 2020](https://arxiv.org/abs/2003.08505)
    """
    hits, r = _hits(embeddings, labels, distance, chunk_size, backend)
    precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return float(np.mean(np.sum(precision * hits, axis=1) / r))


def r_precision(
    embeddings,
    labels,
    distance: str = "euclidean",
    chunk_size: int = 4096,
    backend: str = "numpy",
) -> float:
    """R-precision over a test set (Musgrave et al., 2020).

    ```python
    R = number of OTHER samples with the query's label
    hits = labels[nearest_neighbors(embeddings, R)] == label  # self excluded
    r_precision = mean over queries of sum(hits) / R
    ```

    Queries alone in their class are left out; `map_at_r` documents the
    conventions and the arguments.

    Returns:
        Python float in `[0, 1]`.

    Example:

    >>> import keras_featreg
    >>> x = [[0.0], [1.0], [2.0], [3.0]]
    >>> keras_featreg.evaluation.r_precision(x, [0, 0, 1, 1])
    0.75

    Reference:
    - [Musgrave et al., 2020](https://arxiv.org/abs/2003.08505)
    """
    hits, r = _hits(embeddings, labels, distance, chunk_size, backend)
    return float(np.mean(np.sum(hits, axis=1) / r))


def _hits(embeddings, labels, distance, chunk_size, backend):
    """`(hits, R)` of the queries with `R >= 1`: hits padded with False.

    `hits[q, i]` says whether the `i`-th neighbour of query `q` shares its
    label, for `i < R[q]` (False beyond).
    """
    x, _ = as_scaled_embeddings(embeddings)
    labels = as_labels(labels, x.shape[0])
    _, classes, counts = np.unique(
        labels, return_inverse=True, return_counts=True
    )
    classes = classes.ravel()
    r = counts[classes] - 1  # other samples of the query's class
    if r.max() == 0:
        raise ValueError(
            "MAP@R and R-precision need a class with at least two samples "
            "(a query's relevant samples are the OTHER samples of its "
            f"class). Received: labels with {labels.size} samples, all of "
            "distinct classes"
        )
    neighbours = nearest_neighbors(
        x, int(r.max()), distance, chunk_size, backend
    )
    queries = np.flatnonzero(r > 0)
    found = classes[neighbours[queries]] == classes[queries, None]
    within_r = np.arange(found.shape[1]) < r[queries, None]
    return found & within_r, r[queries]
