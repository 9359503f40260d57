"""Metric-learning losses: pairs and triplets mined from the batch labels.

Each loss is a pure function `xxx_loss(labels, embeddings, ...)` returning
per-sample values of shape `(batch_size,)`, and a serializable
`keras.losses.Loss` taking integer labels as `y_true` and embeddings as
`y_pred`. Under a `tf.distribute` strategy each replica mines the pairs of
its own batch (Keras then averages the replicas), so the result differs from
a single-device run on the global batch, as any in-batch mining does.

`ProxyAnchor` is a layer (`keras_featreg.layers.ProxyAnchor`, also
importable from here): it holds the Proxy Anchor proxies inside the model,
so that `fit` trains them. `TwoViewLoss` is the interface of the two-view
losses (`VICRegLoss`, `InvarianceSVMaxLoss`) whose terms `TwoViewModel`
logs.
"""

from keras_featreg.losses.angular import AngularLoss
from keras_featreg.losses.angular import angular_loss
from keras_featreg.losses.contrastive import ContrastiveLoss
from keras_featreg.losses.contrastive import contrastive_loss
from keras_featreg.losses.invariance_svmax import InvarianceSVMaxLoss
from keras_featreg.losses.lifted_structure import LiftedStructureLoss
from keras_featreg.losses.lifted_structure import lifted_structure_loss
from keras_featreg.losses.n_pair import NPairLoss
from keras_featreg.losses.n_pair import n_pair_loss
from keras_featreg.losses.proxy_anchor import ProxyAnchor
from keras_featreg.losses.proxy_anchor import ProxyAnchorLoss
from keras_featreg.losses.proxy_anchor import proxy_anchor_loss
from keras_featreg.losses.proxy_anchor import (
    proxy_anchor_loss_from_similarities,
)
from keras_featreg.losses.regularized import RegularizedLoss
from keras_featreg.losses.spread_out import SpreadOutLoss
from keras_featreg.losses.spread_out import SpreadOutRegularizer
from keras_featreg.losses.spread_out import spread_out_loss
from keras_featreg.losses.triplet import TripletLoss
from keras_featreg.losses.triplet import triplet_loss
from keras_featreg.losses.triplet import triplet_negative_counts
from keras_featreg.losses.two_view import TwoViewLoss
from keras_featreg.losses.vicreg import VICRegLoss
