"""Packages whose names are imported on first use: `tools/list` over stdio is answered before the heavy parts
of the program (phonenumbers' metadata, the HTTP client, the batch runner) are imported (bench/startup.py)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: name -> the submodule (".budgets") that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], package), name)
        setattr(importlib.import_module(package), name, value)  # the next lookup is a plain attribute
        return value

    return __getattr__
