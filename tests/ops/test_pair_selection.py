"""Deterministic pair selection in ops/pairwise.py (issue 10)."""

import numpy as np

from keras_featreg.ops import pair_selection
from keras_featreg.ops import pairwise
from tests import helpers as testing


class NextInBatchMaskTest(testing.TestCase):
    def test_first_candidate_in_cyclic_order(self):
        rng = np.random.default_rng(0)
        for _ in range(5):
            candidates = rng.random((7, 7)) < 0.4
            chosen = np.asarray(pair_selection.next_in_batch_mask(candidates))
            for i in range(7):
                order = [(i + s) % 7 for s in range(1, 8)]  # i itself last
                found = [j for j in order if candidates[i, j]]
                expected = np.zeros(7, bool)
                if found:
                    expected[found[0]] = True
                np.testing.assert_array_equal(chosen[i], expected)

    def test_positives_wrap_within_the_class(self):
        labels = np.array([0, 1, 0, 1, 0])
        positive, negative = pairwise.label_masks(labels)
        partner = np.argmax(pair_selection.next_in_batch_mask(positive), axis=1)
        np.testing.assert_array_equal(partner, [2, 3, 4, 1, 0])
        partner = np.argmax(pair_selection.next_in_batch_mask(negative), axis=1)
        np.testing.assert_array_equal(partner, [1, 2, 3, 4, 1])


class FirstOccurrencePairsTest(testing.TestCase):
    def test_anchor_and_positive_by_batch_order(self):
        labels = np.array([5, 3, 5, 3, 5, 9])
        is_anchor, partner = pair_selection.first_occurrence_pairs(labels)
        np.testing.assert_array_equal(
            is_anchor, [True, True, False, False, False, False]
        )
        expected = np.zeros((6, 6), bool)
        expected[0, 2] = expected[1, 3] = True  # third 5 and lone 9: neither
        np.testing.assert_array_equal(partner, expected)

    def test_n_pair_masks(self):
        labels = np.array([0, 1, 2, 0, 1, 2])  # [anchors; positives]
        positive, negative = pair_selection.n_pair_masks(
            labels, "pair_positives"
        )
        np.testing.assert_array_equal(np.argmax(positive, 1)[:3], [3, 4, 5])
        self.assertFalse(np.any(np.asarray(positive)[3:]))
        expected = np.zeros((6, 6), bool)
        for i in range(3):
            for j in range(3, 6):
                expected[i, j] = labels[i] != labels[j]
        np.testing.assert_array_equal(negative, expected)
        all_positive, all_negative = pair_selection.n_pair_masks(labels, "all")
        reference = pairwise.label_masks(labels)
        np.testing.assert_array_equal(all_positive, reference[0])
        np.testing.assert_array_equal(all_negative, reference[1])
