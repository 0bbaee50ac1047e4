"""Each command is registered by the module COMMAND_OWNERS names (running one imports only it)."""

from __future__ import annotations

import argparse
import importlib

from audit_pipeline.cli import COMMAND_MODULES, COMMAND_OWNERS


def test_command_owners_name_the_registering_module():
    registered = {}
    for name in COMMAND_MODULES:
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(subparsers)
        registered.update(dict.fromkeys(subparsers.choices, name))
    assert registered == COMMAND_OWNERS
