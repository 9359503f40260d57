"""get_strategy, task_info and is_chief."""

import json
import os
from unittest import mock

import tensorflow as tf

from keras_featreg import distribute
from tests import helpers as testing


class GetStrategyTest(testing.TestCase):
    def test_names(self):
        self.assertIs(
            distribute.get_strategy("default"), tf.distribute.get_strategy()
        )
        strategy = distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])
        self.assertIsInstance(strategy, tf.distribute.MirroredStrategy)
        self.assertEqual(strategy.num_replicas_in_sync, 2)
        self.assertIs(distribute.get_strategy(strategy), strategy)
        self.assertEqual(
            distribute.STRATEGIES, ("default", "mirrored", "multiworker")
        )

    def test_strategies_get_fresh_collective_keys(self):
        # Two mirrored strategies running different collectives (gather,
        # then all-reduce) in one process abort with shared keys.
        @tf.function
        def gather_step(strategy):
            return strategy.run(
                lambda: distribute.gather_batch(tf.ones((2, 1)))
            )

        @tf.function
        def reduce_step(strategy):
            context = tf.distribute.get_replica_context
            return strategy.run(
                lambda: context().all_reduce("SUM", tf.ones((3,)))
            )

        first = distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])
        gather_step(first)
        second = distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])
        total = second.experimental_local_results(reduce_step(second))[0]
        self.assertAllClose(total, [2.0, 2.0, 2.0])

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: name='tpu'"):
            distribute.get_strategy("tpu")
        with self.assertRaisesRegex(ValueError, "Received: devices="):
            distribute.get_strategy("default", devices=["CPU:0"])


class TaskInfoTest(testing.TestCase):
    def test_from_tf_config(self):
        config = {
            "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]},
            "task": {"type": "worker", "index": 1},
        }
        with mock.patch.dict(os.environ, {"TF_CONFIG": json.dumps(config)}):
            self.assertEqual(distribute.task_info(), ("worker", 1, 2))
        with mock.patch.dict(os.environ, {"TF_CONFIG": ""}):
            self.assertEqual(distribute.task_info(), ("worker", 0, 1))

    def test_single_process_is_chief(self):
        self.assertTrue(distribute.is_chief())
        strategy = distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])
        self.assertTrue(distribute.is_chief(strategy))
