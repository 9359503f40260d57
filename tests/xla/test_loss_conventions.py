"""The official-code conventions of the metric losses (issue 10) under XLA.

`fit`, `evaluate`, `predict` and the trained weights with
`jit_compile=True` must equal the `jit_compile=False` run (dynamic batch,
last partial batch), as tests/xla/cases.py checks for the defaults. The
embeddings are L2-normalized, as these losses expect (N-pair's are not, as
Sohn's): un-normalized angular losses of ~75 turn the 1e-7 weight
differences of the two `fit`s into 2e-5 relative differences of
`evaluate`, while the loss and its gradient on the same inputs agree.
"""

import keras
from absl.testing import parameterized

import keras_featreg as kf
from tests import helpers as testing
from tests.xla import cases

LOSSES = {
    "contrastive_balanced": lambda: kf.losses.ContrastiveLoss(
        pairs="balanced", squared=True
    ),
    "n_pair_pair_positives": lambda: kf.losses.NPairLoss(
        negatives="pair_positives"
    ),
    "angular_pair_positives": lambda: kf.losses.AngularLoss(
        negatives="pair_positives"
    ),
    "triplet_semihard_farthest": lambda: kf.losses.TripletLoss(
        mining="semihard", squared=True, fallback="farthest"
    ),
    "spread_out_triplet_hard": lambda: kf.losses.SpreadOutLoss(
        negatives="triplet"
    ),
    "spread_out_triplet_semihard": lambda: kf.losses.SpreadOutLoss(
        negatives="triplet", mining="semihard", fallback="farthest"
    ),
}


class LossConventionsXLATest(testing.TestCase):
    @parameterized.named_parameters(*sorted(LOSSES.items()))
    def test_loss_matches_without_xla(self, factory):
        def build():
            if isinstance(factory(), kf.losses.NPairLoss):
                return cases._dense_model()
            return cases._dense_model(keras.layers.UnitNormalization())

        run = cases._model_case(build, loss=factory, targets="labels")
        self.assertIsNone(cases.compare(run(False), run(True)))
