"""Lloyd's k-means iterations, exact, with the work that cannot matter skipped.

A point keeps its center when that center's score beats an upper bound on
every other center's score. The bound is the old runner-up score, valid for
centers that did not move, and the exact score of the centers that moved
(after a few iterations, few clusters change members, and a cluster that
keeps its members keeps its center bit for bit). Points that fail the test
are compared with every center. Iterations stop early only at a fixed point,
where further iterations change nothing. `keras_featreg.evaluation.kmeans`
validates the arguments and runs `Lloyd(x, chunk_size).run(...)`.
"""

import numpy as np

from keras_featreg.evaluation.arrays import squared_norms

# Above this fraction of moved centers a full assignment pass is cheaper.
_FULL_PASS_FRACTION = 0.5


class Lloyd:
    """Lloyd iterations on `[x, 1] @ [c, -|c|^2 / 2]^T` scores.

    A score `x.c - |c|^2 / 2 = (|x|^2 - |x - c|^2) / 2` ranks centers as the
    distance does. Per sample the state is its center, that center's score
    (`own`) and an upper bound on every other center's score (`other`).
    """

    def __init__(self, x: np.ndarray, chunk_size: int) -> None:
        n, d = x.shape
        self.d = d
        self.chunk_size = chunk_size
        self.x = np.empty((n, d + 1), np.float32)  # [x, 1]
        self.x[:, :d] = x
        self.x[:, d] = 1.0
        self.squared_norms = squared_norms(x)

    def run(self, num_clusters, num_iterations, init, seed):
        rng = np.random.default_rng(seed)
        if init == "random":
            chosen = rng.choice(len(self.x), num_clusters, replace=False)
            centers = self.x[chosen, : self.d].copy()
        else:
            centers = self._kmeans_plus_plus(num_clusters, rng)
        assignments, own, other = self._assign(self.x, centers)
        previous = None
        for _ in range(num_iterations):
            new_centers, refilled = self._update(
                centers, assignments, previous, own, other
            )
            moved = np.flatnonzero(np.any(new_centers != centers, axis=1))
            if moved.size == 0 and not refilled:
                break  # a fixed point: more iterations change nothing
            centers = new_centers
            previous = assignments.copy()
            if moved.size > _FULL_PASS_FRACTION * num_clusters:
                assignments, own, other = self._assign(self.x, centers)
            else:
                self._reassign(centers, moved, assignments, own, other)
        return assignments, centers

    def _augment(self, centers: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [centers, -0.5 * squared_norms(centers)[:, None]], axis=1
        )

    def _assign(self, x: np.ndarray, centers: np.ndarray):
        """Best center, its score and the runner-up score of each sample."""
        augmented = self._augment(centers)
        n = len(x)
        assignments = np.empty(n, np.int64)
        own = np.empty(n, np.float32)
        other = np.empty(n, np.float32)
        for start in range(0, n, self.chunk_size):
            block = slice(start, min(start + self.chunk_size, n))
            scores = x[block] @ augmented.T
            best = scores.argmax(axis=1)
            rows = np.arange(len(best))
            assignments[block] = best
            own[block] = scores[rows, best]
            if len(centers) == 1:
                other[block] = -np.inf
                continue
            scores[rows, best] = -np.inf
            other[block] = scores.max(axis=1)
        return assignments, own, other

    def _reassign(self, centers, moved, assignments, own, other):
        """Updates the state in place after the centers `moved` changed."""
        position = np.full(len(centers), -1)
        position[moved] = np.arange(moved.size)
        augmented = self._augment(centers[moved])
        n = len(self.x)
        for start in range(0, n, self.chunk_size) if moved.size else ():
            block = slice(start, min(start + self.chunk_size, n))
            scores = self.x[block] @ augmented.T
            mine = position[assignments[block]]
            rows = np.flatnonzero(mine >= 0)
            own[block][rows] = scores[rows, mine[rows]]
            scores[rows, mine[rows]] = -np.inf
            np.maximum(other[block], scores.max(axis=1), out=other[block])
        # Keep a center only if it strictly beats every other one.
        stale = np.flatnonzero(own <= other)
        if stale.size:
            found = self._assign(self.x[stale], centers)
            assignments[stale], own[stale], other[stale] = found

    def _update(self, centers, assignments, previous, own, other):
        """Means of the clusters that changed; empty ones take far samples.

        Returns the new centers and whether an empty cluster was refilled.
        """
        num_clusters = len(centers)
        counts = np.bincount(assignments, minlength=num_clusters)
        empty = np.flatnonzero(counts == 0)
        refilled = []
        if empty.size:
            # Farthest first (ties to the lower index), never emptying a
            # cluster: a sample alone in its cluster stays.
            distances = self.squared_norms - 2.0 * own  # |x - c|^2
            for sample in np.argsort(-distances, kind="stable"):
                if len(refilled) == empty.size:
                    break
                if counts[assignments[sample]] >= 2:
                    counts[assignments[sample]] -= 1
                    refilled.append(sample)
            refilled = np.asarray(refilled, np.int64)
            assignments[refilled] = empty[: refilled.size]
            counts[empty[: refilled.size]] = 1
            other[refilled] = np.inf  # force a full comparison next time
        # A cluster that kept its samples keeps its center: skip it.
        changed = np.ones(num_clusters, bool)
        if previous is not None:
            moved = assignments != previous
            changed[:] = False
            changed[assignments[moved]] = True
            changed[previous[moved]] = True
        changed &= counts > 0
        members = np.flatnonzero(changed[assignments])
        members = members[np.argsort(assignments[members], kind="stable")]
        owners = assignments[members]
        sums = np.zeros((num_clusters, self.d), np.float64)
        step = max(self.chunk_size, 1024)
        for start in range(0, members.size, step):
            rows = members[start : start + step]
            ids = owners[start : start + step]
            first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
            part = self.x[rows, : self.d].astype(np.float64)
            sums[ids[first]] += np.add.reduceat(part, first, axis=0)
        new_centers = centers.copy()
        changed = np.flatnonzero(changed)
        new_centers[changed] = sums[changed] / counts[changed, None]
        return new_centers, len(refilled) > 0

    def _kmeans_plus_plus(self, num_clusters, rng):
        n = len(self.x)
        x = self.x[:, : self.d]
        norms = self.squared_norms.astype(np.float64)

        def squared_distances(i):
            return np.maximum(norms + norms[i] - 2.0 * (x @ x[i]), 0.0)

        chosen = [int(rng.integers(n))]
        closest = squared_distances(chosen[0])
        for _ in range(1, num_clusters):
            total = closest.sum()
            if total > 0:
                pick = int(rng.choice(n, p=closest / total))
            else:  # every sample coincides with a center
                pick = int(rng.integers(n))
            chosen.append(pick)
            np.minimum(closest, squared_distances(pick), out=closest)
        return x[chosen].copy()
