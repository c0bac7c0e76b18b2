"""Read a pickled PyTorch module (the reference's `*_object.ckpt`) without its classes or its code.

The reference saves its trained model with `torch.save(module)`: a pickle whose classes live in
stable-worldmodel, stable-pretraining, transformers and Lightning. Loading it the reference's way
(`torch.load(weights_only=False)`) imports all of them at matching versions and runs whatever the
pickle names. Here every class outside a short list of torch containers is replaced by a stand-in
module that only keeps the state the pickle gives it, so nothing from the file is executed and no
library beyond torch is needed: what comes back is a tree of `nn.Module`s whose tensors and plain
attributes (sizes, a ViT config's fields) can be read.
"""
from __future__ import annotations

import _compat_pickle
import builtins
import collections
import copyreg
import functools
import os
import pickle
import types
from typing import Any

import torch
from torch import nn

# Callables a torch pickle needs to rebuild tensors and modules; nothing else from the file is real.
_TORCH_REBUILD = {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state",
                  "_rebuild_from_type_v2", "_rebuild_tensor", "_rebuild_device_tensor_from_numpy"}
_BUILTINS = {"object", "set", "frozenset", "tuple", "list", "dict", "slice", "complex", "range", "bytearray",
             "int", "float", "bool", "str", "bytes"}


class Stub(nn.Module):
    """Stands in for a class the file names: takes any constructor arguments and any pickled state."""
    stub_of = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.__dict__["stub_args"] = (args, kwargs)

    def __setstate__(self, state: Any) -> None:
        slots = None
        if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
            state, slots = state
        if isinstance(state, dict):
            if "_modules" in state or "_parameters" in state:
                super().__setstate__(state)  # a module: fills in what newer torch versions add
            else:
                self.__dict__.update(state)
        elif state is not None:
            self.__dict__["stub_state"] = state
        self.__dict__.update(slots or {})

    # a list or dict subclass is rebuilt with appends / item assignments
    def append(self, item: Any) -> None:
        self.__dict__.setdefault("stub_items", []).append(item)

    def extend(self, items: Any) -> None:
        self.__dict__.setdefault("stub_items", []).extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("stub_mapping", {})[key] = value


@functools.cache
def _stub(module: str, name: str) -> type:
    return type(name, (Stub,), {"stub_of": f"{module}.{name}", "__module__": __name__})


def _real(module: str, name: str) -> Any | None:
    """The real object for a name torch pickles use, or None (then it becomes a stub)."""
    if module == "collections" and name in ("OrderedDict", "defaultdict", "deque"):
        return getattr(collections, name)
    if module == "builtins" and name in _BUILTINS:
        return getattr(builtins, name)
    if module == "copyreg" and name == "_reconstructor":
        return copyreg._reconstructor
    if module in ("torch._utils", "torch._tensor") and name in _TORCH_REBUILD:
        return getattr(__import__(module, fromlist=[name]), name)
    if module == "torch" and (name in ("Size", "device") or isinstance(getattr(torch, name, None), torch.dtype)):
        return getattr(torch, name)
    if module == "torch.nn.parameter" and name == "Parameter":
        return nn.Parameter
    if module.startswith("torch.nn.modules."):  # torch's own layers: data classes, safe to rebuild
        obj = getattr(__import__(module, fromlist=[name]), name, None)
        return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None
    return None


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles (torch.save's) name builtins the Python 2 way: map them back first, as
        # pickle's own find_class does.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        real = _real(module, name)
        return real if real is not None else _stub(module, name)


# What torch.load takes as `pickle_module`.
_PICKLE = types.SimpleNamespace(Unpickler=_Unpickler, load=lambda f, **kw: _Unpickler(f, **kw).load(),
                                __name__="lewm_agent.interop.safe_unpickle")


def load(path: str | os.PathLike) -> Any:
    """The object a `torch.save` wrote, on CPU: plain tensors and dicts as saved; any class other
    than torch's layers and containers as a `Stub` module holding the pickled state."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # a state dict: nothing to stub
    except pickle.UnpicklingError:
        pass
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE)


def tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """A module tree's persistent parameters and buffers by dotted name (its state dict), read from
    the modules' own tables, so no hook or method of a stand-in runs."""
    out: dict[str, torch.Tensor] = {}
    d = obj.__dict__
    skip = d.get("_non_persistent_buffers_set", set())
    for table in ("_parameters", "_buffers"):
        for k, v in (d.get(table) or {}).items():
            if v is not None and k not in skip:
                out[prefix + k] = v.detach()
    for k, child in (d.get("_modules") or {}).items():
        if child is not None:
            out.update(tensors(child, f"{prefix}{k}."))
    return out


def find(obj: nn.Module, children: tuple[str, ...], prefix: str = "") -> tuple[str, nn.Module] | None:
    """The first module (depth first) that has all of `children` as sub-modules, with its dotted prefix."""
    mods = obj.__dict__.get("_modules") or {}
    if all(c in mods for c in children):
        return prefix, obj
    for k, child in mods.items():
        if child is not None:
            hit = find(child, children, f"{prefix}{k}.")
            if hit is not None:
                return hit
    return None


__all__ = ["Stub", "load", "tensors", "find"]
