"""Subcommand handlers that import their implementation only when they run.

The argument parsers live in this package, so ``vlmr1 --help`` lists every command in every
image; the code behind a command lives in the package that owns it (the trainer, the
operator) and may be absent from an image (the operator image has no trainer). Running such
a command there is a one-line error naming the extra to install, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from vlmr1_core.errors import UserError

#: Our own top-level packages: one of these missing means the image lacks that part of vlmr1.
_OWN = ("vlmr1_core", "vlmr1_operator", "vlmr1_trainer", "vlmr1_serving", "vlmr1_cli", "vlmr1_devtools")

Handler = Callable[[argparse.Namespace], int]


class LazyHandler:
    """A handler running ``module:function`` (which takes the parsed arguments).

    ``program`` (``vlmr1 rewards score``) is what ``vlmr1.main`` prefixes this command's errors
    with, where the top-level command name alone would be less precise.
    """

    def __init__(self, target: str, *, command: str, extra: str) -> None:
        self.module_name, _, self.function = target.partition(":")
        self.program = f"vlmr1 {command}"
        self.extra = extra

    def __call__(self, args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module(self.module_name)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if missing in _OWN and missing != self.module_name.split(".")[0]:
                raise  # one of our modules importing another that does not exist: a bug
            raise UserError(
                f"this installation lacks {missing or self.module_name}",
                fix=f"install the {self.extra} extra: pip install 'vlmr1[{self.extra}]'",
            ) from exc
        code: int = getattr(module, self.function)(args)
        return code


def lazy(target: str, *, command: str, extra: str) -> Handler:
    """A handler running ``module:function`` when called; ``extra`` is the pip extra that brings
    the module's dependencies, named in the error when the module or one of its third-party
    imports is missing here."""
    return LazyHandler(target, command=command, extra=extra)
