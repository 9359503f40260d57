"""The loss functions validate their hyperparameters (issue 13.3).

The classes validated theirs at construction; the functions, which the
classes call, accepted `margin=-1` or `margin=nan` and returned negative or
NaN losses. Each function now checks its arguments with the same validator
as its class, with a `Received: name=value` message.
"""

import keras
import numpy as np
from absl.testing import parameterized

from keras_featreg import losses
from tests import helpers as testing

LABELS = np.array([0, 0, 1, 1])
X = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
NAN = float("nan")
INF = float("inf")

# (name, function, kwargs, error, message)
INVALID = [
    ("contrastive_margin", losses.contrastive_loss, {"margin": -1},
     ValueError, "Received: margin=-1"),
    ("contrastive_nan", losses.contrastive_loss, {"margin": NAN},
     ValueError, "Received: margin=nan"),
    ("contrastive_string", losses.contrastive_loss, {"margin": "1"},
     TypeError, "Received: margin='1'"),
    ("contrastive_squared", losses.contrastive_loss, {"squared": 1},
     TypeError, "Received: squared=1"),
    ("triplet_margin", losses.triplet_loss, {"margin": -0.5},
     ValueError, "Received: margin=-0.5"),
    ("triplet_nan", losses.triplet_loss, {"margin": NAN},
     ValueError, "Received: margin=nan"),
    ("triplet_mining", losses.triplet_loss, {"mining": "easy"},
     ValueError, "Received: mining='easy'"),
    ("triplet_squared", losses.triplet_loss, {"squared": "no"},
     TypeError, "Received: squared='no'"),
    ("n_pair_penalty", losses.n_pair_loss, {"l2_penalty": -1},
     ValueError, "Received: l2_penalty=-1"),
    ("n_pair_inf", losses.n_pair_loss, {"l2_penalty": INF},
     ValueError, "Received: l2_penalty=inf"),
    ("angular_alpha", losses.angular_loss, {"alpha": 90.0},
     ValueError, "Received: alpha=90.0"),
    ("angular_nan", losses.angular_loss, {"alpha": NAN},
     ValueError, "Received: alpha=nan"),
    ("lifted_margin", losses.lifted_structure_loss, {"margin": -1},
     ValueError, "Received: margin=-1"),
    ("lifted_nan", losses.lifted_structure_loss, {"margin": NAN},
     ValueError, "Received: margin=nan"),
    ("spread_out_negatives", losses.spread_out_loss, {"negatives": "hard"},
     ValueError, "Received: negatives='hard'"),
    ("spread_out_seed", losses.spread_out_loss, {"seed": 1.5},
     TypeError, "Received: seed=1.5"),
]  # fmt: skip


class FunctionArgumentsTest(testing.TestCase):
    @parameterized.named_parameters(INVALID)
    def test_invalid_hyperparameters(self, fn, kwargs, error, message):
        with self.assertRaisesRegex(error, message):
            fn(LABELS, X, **kwargs)

    def test_valid_hyperparameters_still_work(self):
        # NumPy scalars are numbers; seeds may be generators.
        self.assertEqual(
            losses.contrastive_loss(LABELS, X, margin=np.float32(0.5)).shape,
            (4,),
        )
        seed = keras.random.SeedGenerator(1)
        self.assertEqual(
            losses.spread_out_loss(LABELS, X, seed=seed).shape, (4,)
        )
        self.assertEqual(losses.spread_out_loss(LABELS, X, seed=3).shape, (4,))

    def test_classes_use_the_same_checks(self):
        # Construction still fails early, with the functions' messages.
        for cls, kwargs, message in (
            (losses.ContrastiveLoss, {"margin": NAN}, "margin=nan"),
            (losses.TripletLoss, {"margin": NAN}, "margin=nan"),
            (losses.NPairLoss, {"l2_penalty": -1}, "l2_penalty=-1"),
            (losses.LiftedStructureLoss, {"margin": INF}, "margin=inf"),
        ):
            with self.assertRaisesRegex(ValueError, message):
                cls(**kwargs)
