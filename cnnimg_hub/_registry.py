"""Model registry: names -> (class, default arguments). Kept apart from the architectures and the Hub code.

Each model file registers its variants at its bottom with one line each::

    register_model("sr-espcn", ESPCN, n_feats=32)

and `create_model("sr-espcn", scale=4)` builds one. The class's ``task`` attribute groups models by task.
"""
from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from .tasks import TASKS

_MODELS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {}


def register_model(name: str, cls: type[nn.Module], **defaults: Any) -> None:
    """Register `cls` under `name`, with `defaults` overriding the class's own default arguments."""
    if name in _MODELS:
        raise ValueError(f"model name {name!r} is registered twice")
    if getattr(cls, "task", None) not in TASKS:
        raise ValueError(f"{cls.__name__}.task must be one of {list(TASKS)}")
    unknown = set(defaults) - set(init_parameters(cls))
    if unknown:
        raise ValueError(f"{name}: {sorted(unknown)} are not arguments of {cls.__name__}")
    _MODELS[name] = (cls, dict(defaults))


def init_parameters(cls: type) -> list[str]:
    """The names of the keyword arguments of `cls.__init__`: these are exactly the model's config keys."""
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p != "self"]


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of registered models, optionally only those for one task."""
    return sorted(n for n, (cls, _) in _MODELS.items() if task is None or cls.task == task)


def model_class(name: str) -> type[nn.Module]:
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    return _MODELS[name][0]


def model_defaults(name: str) -> dict[str, Any]:
    model_class(name)
    return dict(_MODELS[name][1])


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model with fresh (untrained) weights; `kwargs` override the variant's defaults."""
    cls = model_class(name)
    unknown = set(kwargs) - set(init_parameters(cls))
    if unknown:
        raise TypeError(f"{name}: unknown argument(s) {sorted(unknown)}; {cls.__name__} takes {init_parameters(cls)}")
    model = cls(**{**_MODELS[name][1], **kwargs})
    model.model_name = name
    return model
