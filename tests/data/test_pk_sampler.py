import collections

import numpy as np
from absl.testing import parameterized
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_featreg.data import PKSampler
from keras_featreg.data.pk_sampler import _max_steps


def assert_pk_batch(test, labels, batch, p, k):
    """Exactly p distinct classes, each exactly k times."""
    counts = collections.Counter(labels[batch].tolist())
    test.assertLen(batch, p * k)
    test.assertLen(counts, p)
    test.assertEqual(set(counts.values()), {k})
    # Class by class: each block of k rows shares one label.
    blocks = labels[batch].reshape(p, k)
    test.assertTrue(np.all(blocks == blocks[:, :1]))


def brute_force_max_steps(chunks, p):
    """Largest B such that B batches of p distinct classes can be formed."""
    best = 0
    for steps in range(1, int(np.sum(chunks)) // p + 1):
        if np.minimum(chunks, steps).sum() >= p * steps:
            best = steps
    return best


class PKSamplerTest(parameterized.TestCase):
    @parameterized.parameters((24, 6), (72, 2), (36, 4), (1, 1), (10, 1))
    def test_batches_are_p_classes_times_k(self, p, k):
        rng = np.random.default_rng(0)
        labels = np.repeat(np.arange(100), rng.integers(3, 15, size=100))
        rng.shuffle(labels)
        sampler = PKSampler(labels, p=p, k=k, seed=0)
        self.assertEqual(sampler.batch_size, p * k)
        for index in range(2):
            batches = sampler.epoch(index)
            self.assertEqual(batches.shape, (sampler.steps_per_epoch, p * k))
            self.assertEqual(batches.dtype, np.int64)
            for batch in batches:
                assert_pk_batch(self, labels, batch, p, k)

    def test_balanced_epoch_visits_every_instance_once(self):
        labels = np.repeat(np.arange(10), 12)  # 4 chunks of 3 per class
        sampler = PKSampler(labels, p=4, k=3, seed=1)
        self.assertEqual(sampler.steps_per_epoch, 10)  # 40 chunks / 4
        batches = sampler.epoch(0)
        np.testing.assert_array_equal(np.sort(batches.ravel()), np.arange(120))

    def test_partial_chunks_reuse_other_instances_of_the_class(self):
        labels = np.repeat(np.arange(6), 7)  # 7 = 2 * 3 + 1
        sampler = PKSampler(labels, p=3, k=3, seed=0)
        batches = sampler.epoch(0)
        self.assertEqual(set(batches.ravel()), set(range(labels.size)))
        for batch in batches:
            for chunk in batch.reshape(3, 3):
                self.assertLen(set(chunk.tolist()), 3)  # no repeats

    def test_reshuffles_between_epochs(self):
        labels = np.repeat(np.arange(20), 10)
        sampler = PKSampler(labels, p=5, k=4, seed=3)
        first, second = sampler.epoch(0), sampler.epoch(1)
        self.assertFalse(np.array_equal(first, second))
        # Batch composition changes too, not only the order.
        compose = lambda e: {frozenset(labels[b].tolist()) for b in e}  # noqa: E731
        self.assertNotEqual(compose(first), compose(second))

    def test_seeded_and_reproducible(self):
        labels = np.repeat(np.arange(20), 10)
        a = PKSampler(labels, p=5, k=4, seed=7)
        b = PKSampler(labels, p=5, k=4, seed=7)
        c = PKSampler(labels, p=5, k=4, seed=8)
        np.testing.assert_array_equal(a.epoch(3), b.epoch(3))
        self.assertFalse(np.array_equal(a.epoch(3), c.epoch(3)))
        unseeded = PKSampler(labels, p=5, k=4)
        np.testing.assert_array_equal(unseeded.epoch(0), unseeded.epoch(0))

    def test_iteration_runs_epoch_after_epoch(self):
        labels = np.repeat(np.arange(6), 4)
        sampler = PKSampler(labels, p=3, k=2, seed=0)
        steps = sampler.steps_per_epoch
        iterator = iter(sampler)
        stream = np.stack([next(iterator) for _ in range(2 * steps + 1)])
        np.testing.assert_array_equal(stream[:steps], sampler.epoch(0))
        second = stream[steps : 2 * steps]
        np.testing.assert_array_equal(second, sampler.epoch(1))
        np.testing.assert_array_equal(stream[-1], sampler.epoch(2)[0])

    def test_small_classes_replace_repeats_their_instances(self):
        # Class 9 has 2 instances, fewer than k = 4.
        labels = np.concatenate([np.repeat(np.arange(9), 8), [9, 9]])
        small = np.flatnonzero(labels == 9)
        sampler = PKSampler(labels, p=10, k=4, seed=0)
        for batch in sampler.epoch(0):
            assert_pk_batch(self, labels, batch, 10, 4)
            chunk = batch[labels[batch] == 9]
            self.assertEqual(set(chunk.tolist()), set(small.tolist()))

    def test_small_classes_skip_never_samples_them(self):
        labels = np.concatenate([np.repeat(np.arange(9), 8), [9, 9]])
        sampler = PKSampler(labels, p=3, k=4, seed=0, small_classes="skip")
        self.assertEqual(sampler.num_classes, 9)
        batches = sampler.epoch(0)
        self.assertNotIn(9, set(labels[batches.ravel()].tolist()))
        for batch in batches:
            assert_pk_batch(self, labels, batch, 3, 4)

    def test_arbitrary_label_values(self):
        labels = np.array(["cat", "dog", "cow"] * 4)
        sampler = PKSampler(labels, p=2, k=2, seed=0)
        for batch in sampler.epoch(0):
            assert_pk_batch(self, labels, batch, 2, 2)

    def test_skewed_classes_reach_the_maximum_steps(self):
        # One huge class and ten singletons: at most 10 batches of p = 2.
        labels = np.concatenate([np.zeros(1000, int), np.arange(1, 11)])
        sampler = PKSampler(labels, p=2, k=1, seed=0)
        self.assertEqual(sampler.steps_per_epoch, 10)
        for batch in sampler.epoch(0):
            assert_pk_batch(self, labels, batch, 2, 1)

    @settings(max_examples=40, deadline=None)
    @given(
        sizes=st.lists(st.integers(1, 30), min_size=1, max_size=12),
        p=st.integers(1, 12),
        k=st.integers(1, 6),
        seed=st.integers(0, 2**32),
    )
    def test_property_every_epoch_is_valid(self, sizes, p, k, seed):
        labels = np.repeat(np.arange(len(sizes)), sizes)
        if p > len(sizes):
            with self.assertRaisesRegex(ValueError, f"Received: p={p}"):
                PKSampler(labels, p=p, k=k, seed=seed)
            return
        sampler = PKSampler(labels, p=p, k=k, seed=seed)
        chunks = -(-np.asarray(sizes) // k)
        self.assertEqual(
            sampler.steps_per_epoch, brute_force_max_steps(chunks, p)
        )
        for batch in sampler.epoch(0):
            assert_pk_batch(self, labels, batch, p, k)

    def test_max_steps_matches_brute_force(self):
        rng = np.random.default_rng(0)
        for _ in range(50):
            chunks = rng.integers(1, 20, size=rng.integers(1, 15))
            p = int(rng.integers(1, chunks.size + 1))
            self.assertEqual(
                _max_steps(chunks, p), brute_force_max_steps(chunks, p)
            )

    def test_invalid_arguments(self):
        labels = np.repeat(np.arange(10), 3)
        with self.assertRaisesRegex(ValueError, "Received: p=0"):
            PKSampler(labels, p=0, k=2)
        with self.assertRaisesRegex(ValueError, "Received: k=0"):
            PKSampler(labels, p=2, k=0)
        with self.assertRaisesRegex(ValueError, "Received: p=11"):
            PKSampler(labels, p=11, k=2)
        with self.assertRaisesRegex(TypeError, "Received: p=1.5"):
            PKSampler(labels, p=1.5, k=2)
        with self.assertRaisesRegex(TypeError, "Received: k=True"):
            PKSampler(labels, p=2, k=True)
        with self.assertRaisesRegex(ValueError, "Received: seed=-1"):
            PKSampler(labels, p=2, k=2, seed=-1)
        with self.assertRaisesRegex(ValueError, "Received: small_classes="):
            PKSampler(labels, p=2, k=2, small_classes="drop")
        with self.assertRaisesRegex(ValueError, r"labels.shape=\(3, 10\)"):
            PKSampler(labels.reshape(3, 10), p=2, k=2)
        with self.assertRaisesRegex(ValueError, r"labels.shape=\(0,\)"):
            PKSampler([], p=1, k=1)
        # Only 2 classes have k = 4 instances or more.
        uneven = np.concatenate([np.repeat([0, 1], 4), np.repeat([2, 3], 2)])
        with self.assertRaisesRegex(ValueError, "at least k=4.*Received: p=3"):
            PKSampler(uneven, p=3, k=4, small_classes="skip")
        with self.assertRaisesRegex(ValueError, "Received: index=-1"):
            PKSampler(labels, p=2, k=2).epoch(-1)
