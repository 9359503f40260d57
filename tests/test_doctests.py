"""Every docstring example of the package runs (doctest).

Each docstring's example runs in an empty namespace, so it must make its
own imports (`>>> import keras`, `>>> import keras_featreg`, ...), as a
reader copying it would. Outputs are compared as printed; examples print
numbers rounded (`round(float(x), 4)`, `.round(4).tolist()`) so that the
last float digits do not matter. Examples that train use tiny sizes.
"""

import doctest
import importlib
import pkgutil

import keras
import pytest

import keras_featreg

# Examples measured above 5 s on 2 shared CPU cores (they train).
SLOW = (
    "keras_featreg.data.augmentations.two_view_dataset",
    "keras_featreg.models.two_view.TwoViewModel",
)
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_names():
    names = [keras_featreg.__name__]
    for info in pkgutil.walk_packages(
        keras_featreg.__path__, prefix=keras_featreg.__name__ + "."
    ):
        names.append(info.name)
    return sorted(names)


def docstring_examples():
    """`(name, DocTest)` of every docstring with examples, deduplicated."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = {}
    for name in module_names():
        module = importlib.import_module(name)
        for test in finder.find(module, name, globs={}):
            if test.examples and test.name.startswith(name):
                # Re-exported objects are found again from their package.
                key = (test.filename, test.lineno)
                tests.setdefault(key, test)
    return sorted(tests.values(), key=lambda test: test.name)


def params():
    for test in docstring_examples():
        marks = [pytest.mark.slow] if test.name in SLOW else []
        yield pytest.param(test, id=test.name, marks=marks)


def test_examples_are_found():
    names = {test.name for test in docstring_examples()}
    assert "keras_featreg.schedules.WarmupCosineDecay" in names
    assert len(names) > 30


@pytest.mark.parametrize("test", list(params()))
def test_docstring_example(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    keras.utils.clear_session(free_memory=False)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    failures = []
    test.globs = {}
    try:
        runner.run(test, out=lambda text: failures.append(text))
    finally:
        keras.utils.clear_session(free_memory=False)
    assert not failures, "".join(failures)
