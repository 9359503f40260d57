"""Test setup: quiet TensorFlow and two logical CPUs for tf.distribute tests."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# XLA tests (tests/xla, and every `jit_compile=True` run, subprocesses
# included) compile with the backend's LLVM optimizations off: XLA's HLO,
# where its semantics live, is unchanged, and compiling takes a third less
# CPU (the XLA losses group: 100 -> 68 s). Values stay within the tests'
# 1e-5 of the non-XLA path. benchmarks/gpu_check.py runs XLA's defaults.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")


def pytest_configure(config):
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0],
            [
                tf.config.LogicalDeviceConfiguration(),
                tf.config.LogicalDeviceConfiguration(),
            ],
        )
    except RuntimeError:  # already initialized (e.g. a plugin touched TF)
        pass


# Tests that take more than a few seconds on 2 CPU cores (measured with
# `pytest --durations`: above 3 s with 5 jobs sharing the 2 cores), marked
# `slow` here so that `pytest -m "not slow"` runs the rest in about a
# minute. Node-id prefixes; a new slow test can also carry
# `@pytest.mark.slow` itself.
SLOW_TESTS = (
    # Subprocesses: XLA groups, worker processes, fresh-process serving.
    "tests/xla/test_xla.py::test_equal_to_the_non_xla_path",
    "tests/distribute/test_multiworker.py::",
    "tests/test_export.py::",
    "tests/test_backend.py::BackendCheckTest::test_import_fails_at_import",
    # tf.distribute training runs.
    "tests/distribute/test_trainer.py::",
    "tests/distribute/test_mirrored.py::",
    "tests/distribute/test_regularizer_replicas.py::",
    "tests/distribute/test_gather.py::GatheredGradientTest::",
    "tests/layers/test_embedding_regularization.py::"
    "EmbeddingRegularizationTest::test_fit_with_mirrored_strategy",
    "tests/losses/test_exact_labels.py::ExactLabelsTest::test_mirrored",
    "tests/losses/test_triplet.py::TripletLossTest::test_mirrored",
    "tests/losses/test_spread_out.py::SpreadOutRegularizerTest::test_mirrored",
    "tests/optimizers/test_lars.py::LARSTest::test_mirrored",
    # Example runs.
    "tests/examples/test_counting_ssl.py::CountingSSLTest::test_main",
    "tests/examples/test_metric_learning.py::MetricLearningExampleTest::",
    "tests/examples/test_ssl_vicreg.py::SslVicregRunTest::",
    "tests/examples/test_ssl_vicreg.py::SslVicregPartsTest::test_mock_tfds",
    "tests/examples/test_unit_circle.py::UnitCircleExampleTest::test_main",
    "tests/examples/test_svmax_lambda_curves.py::",
    "tests/examples/test_gan_mixture.py::GanExampleTest::test_main",
    "tests/examples/test_gan_mixture.py::TrainStepTest::test_run_reports",
    "tests/examples/test_gan_mixture.py::TrainStepTest::test_unrolling",
    "tests/examples/test_outputs.py::ExampleRunLeavesCheckoutCleanTest::",
    # Training runs (fit over several steps, several models).
    "tests/models/test_two_view.py::TwoViewModelTest::test_invariance",
    "tests/models/test_two_view.py::TwoViewModelTest::test_save_and_load",
    "tests/models/test_two_view.py::TwoViewModelTest::test_loss_is_a_param",
    "tests/models/test_two_view.py::TwoViewModelTest::test_fit_evaluate",
    "tests/models/test_two_view.py::TwoViewModelTest::test_mixed_precision",
    "tests/models/test_two_view.py::TwoViewModelTest::test_augmenter",
    "tests/models/test_two_view.py::TwoViewModelTest::test_batch_size_one",
    "tests/models/test_two_view.py::TwoViewModelTest::test_views_of_diff",
    "tests/models/test_two_view.py::TwoViewModelTest::test_nan_input",
    "tests/models/test_two_view.py::TwoViewModelTest::test_vicreg_without",
    "tests/models/test_two_view.py::TwoViewModelTest::test_train_step_grad",
    "tests/models/test_two_view.py::TwoViewModelTest::test_export_encoder",
    "tests/models/test_two_view_inputs.py::TwoViewStepWorkTest::"
    "test_logged_terms",
    "tests/regularizers/test_keras_paths.py::KerasPathsTest::test_training",
    "tests/regularizers/test_keras_paths.py::KerasPathsTest::test_mixed",
    "tests/regularizers/test_keras_paths.py::KerasPathsTest::test_fit_loss",
    "tests/losses/test_exact_labels.py::ExactLabelsTest::test_proxy_anchor",
    "tests/losses/test_exact_labels.py::ExactLabelsTest::test_large_ids",
    "tests/losses/test_exact_labels.py::ExactLabelsTest::test_fit_and_eval",
    "tests/losses/test_invariance_svmax.py::InvarianceSVMaxLossTest::"
    "test_fit_smoke",
    "tests/losses/test_regularized.py::RegularizedLossTest::test_fit",
    "tests/metrics/test_mean_singular_value.py::MeanSingularValueTest::"
    "test_compile_fit_and_evaluate",
    "tests/data/test_augmentations.py::TwoViewDatasetTest::",
    "tests/data/test_augmentations.py::VICRegAugmenterTest::test_config",
    "tests/evaluation/test_collapse.py::EmbeddingCollapseReportTest::"
    "test_large_set",
    "tests/evaluation/test_linear_probe.py::LinearProbeAccuracyTest::"
    "test_separable",
    "tests/losses/test_two_view.py::TwoViewLossTest::test_a_subclass",
    "tests/test_callbacks.py::CollapseMonitorTest::test_clash_with_a_metric",
    # Graph-mode and float64 routes of the SVD.
    "tests/ops/test_singular_values.py::MeanSingularValueTest::test_tf_func",
    "tests/ops/test_singular_values.py::MeanSingularValueTest::test_graph",
    "tests/ops/test_singular_values.py::MeanSingularValueTest::"
    "test_nearly_collapsed_batches_are_exact",
)


def pytest_collection_modifyitems(config, items):
    matched = set()
    files = {item.nodeid.split("::")[0] for item in items}
    for item in items:
        for prefix in SLOW_TESTS:
            if item.nodeid.startswith(prefix):
                item.add_marker(pytest.mark.slow)
                matched.add(prefix)
    for prefix in SLOW_TESTS:
        # A renamed test: its file was collected but nothing matched.
        if prefix not in matched and prefix.split("::")[0] in files:
            config.issue_config_time_warning(
                pytest.PytestWarning(
                    f"tests/conftest.py: SLOW_TESTS entry {prefix!r} "
                    "matches no collected test"
                ),
                stacklevel=2,
            )
