"""Exact top-k search in bounded memory: the engine of `recall_at_k`.

The `(n, n)` distance matrix is never built. Blocks of
`chunk_size x chunk_size` similarities come from one BLAS matmul each;
since distances are symmetric only the blocks on and above the diagonal are
computed, and each serves the queries on both of its sides. No block is
sorted. A query's first block is ranked through group maxima (the maximum
of each group of `_GROUP` entries picks the few groups that can hold the
top-k); after that, only entries that reach the query's current k-th best
can enter, and one comparison over the block finds those few.

Candidates are kept as uint64 sort keys: the float32 score in the high 32
bits (mapped so that larger scores sort first), the sample index in the
low 32 bits (so equal scores fall back to the lower index).
"""

import numpy as np

from keras_featreg.evaluation.arrays import squared_norms

# Entries per group of the candidate search; 32 balances the cost of the
# group reduction (per entry) against the candidates ranked (k x 32).
_GROUP = 32
_MAX_KEY = np.uint64(np.iinfo(np.uint64).max)
_INDEX_BITS = np.uint64(32)
_INDEX_MASK = np.uint64(0xFFFFFFFF)


def exact_neighbors(x: np.ndarray, k: int, chunk_size: int) -> np.ndarray:
    """Indices of the `k` nearest OTHER rows of each row, nearest first.

    Euclidean, exact, in bounded memory (see the module docstring); ties go
    to the lower index. `x` is a float32 `(n, d)` array with `k <= n - 1`
    (`keras_featreg.evaluation.nearest_neighbors` validates them).

    Returns:
        int64 array of shape `(n, k)`.
    """
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
