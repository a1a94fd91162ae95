"""Plugins: modules outside the package that register policies, confidence measures, tasks or model
families when imported.

Two ways in: an installed distribution declares an entry point in the group ``fastdllm.plugins``
(``[project.entry-points."fastdllm.plugins"] my_policies = "my_package.policies"``), loaded once per
process by ``load_plugins()`` (the CLI calls it at start, and a registry calls it before reporting an
unknown name); or a module is named explicitly: ``load_plugins(["my_module"])``, the CLI's global
``--plugin my_module`` option, or a run config's ``plugins: [my_module]``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Sequence

GROUP = "fastdllm.plugins"
_entry_points_loaded = False


class PluginError(ImportError, RuntimeError):
    """A plugin module or entry point that cannot be imported; the message names it and the fix."""


def load_plugins(modules: Sequence[str] = ()) -> list[str]:
    """Import ``modules`` and (the first time) every entry point of the group ``fastdllm.plugins``;
    return the names imported by this call (module names, and ``entry-point-name=module`` strings)."""
    global _entry_points_loaded
    if isinstance(modules, str):
        modules = [modules]
    loaded = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise PluginError(f"plugin module {module!r} cannot be imported ({err}); check the name and that its "
                              "folder is on PYTHONPATH or the package is installed") from err
        loaded.append(module)
    if not _entry_points_loaded:
        _entry_points_loaded = True  # set first: a plugin that looks up a registry must not recurse
        for point in entry_points(group=GROUP):
            try:
                point.load()
            except Exception as err:
                raise PluginError(f"the {GROUP} entry point {point.name!r} ({point.value}) failed to load "
                                  f"({type(err).__name__}: {err}); fix or uninstall the distribution that "
                                  "declares it") from err
            loaded.append(f"{point.name}={point.value}")
    return loaded
