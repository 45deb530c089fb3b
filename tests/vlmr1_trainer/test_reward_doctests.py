"""The docstring examples of the reward, data and CLI modules are exact outputs: run them."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import vlmr1_trainer.rewards

MODULES = ["vlmr1_trainer.data", "vlmr1_trainer.commands.rewards", "vlmr1_trainer.rewards"] + [
    f"vlmr1_trainer.rewards.{m.name}" for m in pkgutil.iter_modules(vlmr1_trainer.rewards.__path__)
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} doctest failures in {name}"
