from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import slipway.errors as errors


def test_hierarchy_drawn_in_the_docstring_matches_the_classes():
    doc = errors.__doc__ or ""
    classes = {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.SlipwayError)
    }
    for name, cls in classes.items():
        assert name in doc, f"{name} is missing from the tree in slipway/errors.py"
        if cls is not errors.SlipwayError:
            assert issubclass(cls, errors.SlipwayError)


def test_value_errors_stay_value_errors_and_carry_the_hint():
    error = errors.InvalidRequest("name 'X' is bad", hint="use lower case")
    assert isinstance(error, ValueError)
    assert str(error) == "name 'X' is bad Fix: use lower case"
    missing = errors.ObjectNotFound("no object at a/b")
    assert isinstance(missing, KeyError) and str(missing) == "no object at a/b"


@pytest.mark.parametrize("package", ["slipway", "blocks", "tasks", "flows", "deployments"])
def test_every_module_exports_exactly_what_it_defines(package):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{info.name} has no __all__"
        for name in exported:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"
