"""ecmpi.errors holds every exception; the modules that raise them re-export the same classes."""

from __future__ import annotations

import importlib
import inspect
import warnings

import pytest

import ecmpi
from ecmpi import error_channel, errors

#: exception name -> the modules it was importable from before ecmpi.errors held it
OLD_PATHS = {
    "SchemaError": ("ecmpi.log", "ecmpi.log.schema"),
    "UsageError": ("ecmpi.cli", "ecmpi.options"),
    "RunError": ("ecmpi.algorithms.loop",),
    "NonFiniteError": ("ecmpi.algorithms.loop",),
    "ReproduceError": ("ecmpi.reproduce",),
    "KernelCompileError": ("ecmpi._kernels",),
    "NetnsUnavailable": ("ecmpi.bench.netns",),
    "SetupInterrupted": ("ecmpi.algorithms.loop",),
    "UnknownConstant": (),  # new with the mlp problem: only ecmpi.errors and ecmpi
}
BASES = {
    "SchemaError": (ValueError,),
    "UsageError": (ValueError,),
    "RunError": (RuntimeError,),
    "NonFiniteError": (errors.RunError, FloatingPointError),
    "ReproduceError": (RuntimeError,),
    "KernelCompileError": (RuntimeError,),
    "NetnsUnavailable": (RuntimeError,),
    "SetupInterrupted": (RuntimeError,),
    "UnknownConstant": (errors.UsageError,),
}


def test_every_exception_is_listed_and_documented():
    defined = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException)
    }
    assert defined == set(errors.__all__) == set(OLD_PATHS)
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert cls.__module__ == "ecmpi.errors"
        assert cls.__doc__ and cls.__doc__.strip()
        assert cls.__bases__ == BASES[name]


@pytest.mark.parametrize("name", sorted(OLD_PATHS))
def test_old_import_paths_give_the_same_class(name):
    cls = getattr(errors, name)
    for module in OLD_PATHS[name]:
        assert getattr(importlib.import_module(module), name) is cls, f"{module}.{name}"
    assert getattr(ecmpi, name) is cls
    assert name in ecmpi.__all__


def test_reproduce_error_keeps_its_exit_code():
    assert errors.ReproduceError("x").code == 1
    e = errors.ReproduceError("no mpiexec", code=127)
    assert e.code == 127 and str(e) == "no mpiexec"


def test_nonfinite_error_is_a_run_error_and_a_floating_point_error():
    with pytest.raises(errors.RunError):
        raise errors.NonFiniteError("nan")
    with pytest.raises(FloatingPointError):
        raise errors.NonFiniteError("nan")


def test_error_channel_names_moved_with_a_deprecation_warning():
    for name in error_channel.__all__:
        with pytest.warns(DeprecationWarning, match=f"ecmpi.error_channel.{name}"):
            assert getattr(errors, name) is getattr(error_channel, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            errors.no_such_name  # noqa: B018
