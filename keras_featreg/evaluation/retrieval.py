"""Recall@k over a whole test set: leave-one-out exact nearest neighbours.

The standard metric-learning retrieval protocol (Song et al., 2016; used by
the SVMax paper, Proxy-Anchor and pytorch-metric-learning): every test sample
is a query, the database is every OTHER test sample, and recall@k is the
fraction of queries with at least one same-label sample among their k nearest
neighbours.

The search is exact and runs in bounded memory: the `(n, n)` distance matrix
is never built. Blocks of `chunk_size x chunk_size` similarities come from one
BLAS matmul each; since distances are symmetric only the blocks on and above
the diagonal are computed, and each serves the queries on both of its sides.
No block is sorted. A query's first block is ranked through group maxima
(the maximum of each group of `_GROUP` entries picks the few groups that can
hold the top-k); after that, only entries that reach the query's current
k-th best can enter, and one comparison over the block finds those few.
"""

from collections.abc import Sequence

import numpy as np

from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int

_DISTANCES = ("euclidean", "cosine")
_BACKENDS = ("numpy", "faiss")
# Entries per group of the candidate search; 32 balances the cost of the
# group reduction (per entry) against the candidates ranked (k x 32).
_GROUP = 32
_MAX_KEY = np.uint64(np.iinfo(np.uint64).max)
_INDEX_BITS = np.uint64(32)
_INDEX_MASK = np.uint64(0xFFFFFFFF)


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
      less than float32 rounding may swap.
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

    >>> embeddings = np.random.default_rng(0).normal(size=(100, 16))
    >>> labels = np.arange(100) % 10
    >>> keras_featreg.evaluation.recall_at_k(embeddings, labels, k=(1, 4))
    {1: 0.05, 4: 0.33}

    Reference:
    - [Song et al., 2016](https://arxiv.org/abs/1511.06452) (the protocol)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770) (SVMax)
    """
    x = as_embeddings(embeddings)
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

    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> keras_featreg.evaluation.nearest_neighbors(x, k=1)[:, 0]
    array([1, 0, 1])
    """
    x = as_embeddings(embeddings)
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
    return _numpy_neighbours(x, k, chunk_size)


def _numpy_neighbours(x: np.ndarray, k: int, chunk_size: int) -> np.ndarray:
    n, d = x.shape
    # similarity(i, j) = x_i.x_j - |x_i|^2/2 - |x_j|^2/2 = -|x_i - x_j|^2 / 2,
    # one matmul of [x, -|x|^2/2, 1] with [x, 1, -|x|^2/2].
    augmented = np.empty((n, d + 2), np.float32)
    augmented[:, :d] = x
    augmented[:, d] = -0.5 * squared_norms(x)
    augmented[:, d + 1] = 1.0
    swap = np.r_[np.arange(d), d + 1, d]
    best = np.full((n, k), _MAX_KEY)  # per query: (score, index) sort keys
    starts = range(0, n, chunk_size)
    for i in starts:
        rows = slice(i, min(i + chunk_size, n))
        for j in starts[starts.index(i) :]:
            cols = slice(j, min(j + chunk_size, n))
            scores = augmented[rows] @ augmented[cols][:, swap].T
            if i == j:
                np.fill_diagonal(scores, -np.inf)  # leave one out
            best[rows] = _update(best[rows], scores, j, k)
            if j > i:  # the block's other side: queries `cols`
                best[cols] = _update(best[cols], scores.T, i, k)
    best.sort(axis=1)
    return (best & _INDEX_MASK).astype(np.int64)


def _update(best: np.ndarray, scores: np.ndarray, offset: int, k: int):
    """Merges a block (queries x candidates, `offset` + column index) in.

    Only scores reaching a query's current k-th best can enter its top-k;
    once a query has seen one block, few do, and one comparison finds them.
    """
    queries, m = scores.shape
    kth = _decode(best.max(axis=1))
    if np.isneginf(kth).all():  # nothing seen yet (or nothing better)
        return _merge(best, _block_top_k(scores, offset, k), k)
    if scores.flags.c_contiguous:
        found = np.flatnonzero(scores >= kth[:, None])
        query, column = np.divmod(found, m)
    else:  # the transposed view of a C-contiguous block
        found = np.flatnonzero(scores.T >= kth[None, :])
        column, query = np.divmod(found, queries)
    if query.size > 4 * k * queries:  # weak bounds: rank the block instead
        return _merge(best, _block_top_k(scores, offset, k), k)
    if not query.size:
        return best
    keys = _sort_keys(scores[query, column], column + offset)
    # Per query: its k best keys among the old k and the new entries.
    hit = np.unique(query)
    slot = np.searchsorted(hit, query)
    owners = np.concatenate([np.repeat(np.arange(hit.size), k), slot])
    candidates = np.concatenate([best[hit].ravel(), keys])
    order = np.lexsort((candidates, owners))
    counts = np.bincount(owners, minlength=hit.size)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    keep = order[np.arange(order.size) - first < k]
    best = best.copy()
    best[hit] = candidates[keep].reshape(hit.size, k)
    return best


def _block_top_k(scores: np.ndarray, offset: int, k: int) -> np.ndarray:
    """Keys of the `k` best columns of each row (`offset` + column index).

    The columns fall into strided groups `{g, g + G, g + 2G, ...}`. The k-th
    largest group maximum `t` bounds the k-th largest score from below, so
    the top-k lie in the groups whose maximum is >= t (or in the ragged
    tail). When exactly k groups reach t, only those are ranked; when more
    do (ties, as in collapsed embeddings), the whole row is.
    """
    queries, m = scores.shape
    num_groups = m // _GROUP
    if num_groups <= k:  # a small block: rank it all
        columns = _top_positions(scores, k)
    else:
        main = _GROUP * num_groups
        grouped = scores[:, :main].reshape(queries, _GROUP, num_groups)
        group_max = grouped.max(axis=1)
        kth = np.partition(group_max, num_groups - k, axis=1)
        selected = group_max >= kth[:, num_groups - k, None]
        fast = selected.sum(axis=1) == k
        columns = np.empty((queries, k), np.int64)
        rows = np.flatnonzero(fast)
        if rows.size:
            groups = np.nonzero(selected[rows])[1].reshape(-1, 1, k)
            # Candidates (row, member, group), flattened: ascending columns.
            candidates = grouped[
                rows[:, None, None], np.arange(_GROUP)[:, None], groups
            ].reshape(rows.size, -1)
            if m > main:
                candidates = np.concatenate(
                    [candidates, scores[rows, main:]], axis=1
                )
            positions = _top_positions(candidates, k)
            member, group = np.divmod(positions, k)
            group = np.take_along_axis(groups[:, 0], group, axis=1)
            in_tail = positions >= _GROUP * k
            columns[rows] = np.where(
                in_tail,
                positions - _GROUP * k + main,
                member * num_groups + group,
            )
        rows = np.flatnonzero(~fast)
        if rows.size:
            columns[rows] = _top_positions(scores[rows], k)
    values = np.take_along_axis(scores, columns, axis=1)
    return _sort_keys(values, columns + offset)


def _top_positions(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the `k` largest entries per row, ties to the lower one.

    Returns them ascending (not ranked), or all positions when a row is no
    longer than `k`.
    """
    queries, m = scores.shape
    if m <= k:
        return np.broadcast_to(np.arange(m), (queries, m))
    kth = np.partition(scores, m - k, axis=1)[:, m - k, None]
    above = scores > kth
    at = scores == kth
    needed = k - above.sum(axis=1, keepdims=True)
    take = above | (at & (np.cumsum(at, axis=1) <= needed))
    return np.nonzero(take)[1].reshape(queries, k)


def _sort_keys(scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """uint64 keys ordering by (score descending, index ascending).

    The high 32 bits map float32 scores monotonically (larger is smaller);
    the low 32 bits hold the sample index, so keys are unique and equal
    scores fall back to the lower index.
    """
    bits = np.ascontiguousarray(scores, np.float32).view(np.uint32)
    negative = (bits >> np.uint32(31)).astype(bool)
    ascending = np.where(negative, ~bits, bits | np.uint32(0x80000000))
    high = (~ascending).astype(np.uint64) << _INDEX_BITS
    return high | indices.astype(np.uint64)


def _decode(keys: np.ndarray) -> np.ndarray:
    """The float32 scores of sort keys (`-inf` for the empty key)."""
    ascending = ~(keys >> _INDEX_BITS).astype(np.uint32)
    positive = (ascending >> np.uint32(31)).astype(bool)
    bits = np.where(positive, ascending & np.uint32(0x7FFFFFFF), ~ascending)
    scores = bits.view(np.float32)
    return np.where(keys == _MAX_KEY, np.float32(-np.inf), scores)


def _merge(best: np.ndarray, new: np.ndarray, k: int) -> np.ndarray:
    both = np.concatenate([best, new], axis=1)
    return np.partition(both, k - 1, axis=1)[:, :k]


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


def import_faiss():
    """Imports the optional faiss package or says how to install it."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            '`backend="faiss"` needs the optional faiss package: '
            "`pip install faiss-cpu`. Received: backend='faiss'"
        ) from error
    return faiss


def as_embeddings(embeddings, name: str = "embeddings") -> np.ndarray:
    """Validates embeddings; returns a C-contiguous float32 `(n, d)` array.

    Raises:
        TypeError: non-numeric (or boolean, or complex) values.
        ValueError: rank < 2, no samples or features, NaN/Inf values, or
            values whose squares overflow float32.
    """
    x = np.asarray(embeddings)
    if x.dtype == bool or not (
        np.issubdtype(x.dtype, np.floating)
        or np.issubdtype(x.dtype, np.integer)
    ):
        raise TypeError(
            f"`{name}` must hold real numbers. Received: {name}.dtype={x.dtype}"
        )
    if x.ndim < 2:
        raise ValueError(
            f"`{name}` must have shape (num_samples, features). "
            f"Received: {name}.shape={x.shape}"
        )
    if x.shape[0] == 0 or x[0].size == 0:
        raise ValueError(
            f"`{name}` must not be empty. Received: {name}.shape={x.shape}"
        )
    x = np.ascontiguousarray(x.reshape(x.shape[0], -1), np.float32)
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"`{name}` must not contain NaN or Inf values (or values beyond "
            f"float32). Received: {name} with {bad} non-finite entries"
        )
    if not np.isfinite(squared_norms(x)).all():
        raise ValueError(
            f"`{name}` is too large: squared norms overflow float32; rescale "
            f"it. Received: {name} with max |value|={np.abs(x).max()}"
        )
    return x


def as_labels(labels, num_samples: int, name: str = "labels") -> np.ndarray:
    """Validates labels: shape `(num_samples,)` (or `(num_samples, 1)`)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (num_samples,):
        raise ValueError(
            f"`{name}` must have shape ({num_samples},): one label per "
            f"embedding. Received: {name}.shape={labels.shape}"
        )
    return labels


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


def squared_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def l2_normalize(x: np.ndarray, epsilon: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit norm; all-zero rows stay zero."""
    norms = np.sqrt(squared_norms(x))[:, None]
    return (x / np.maximum(norms, epsilon)).astype(np.float32)
