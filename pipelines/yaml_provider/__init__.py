"""The suite's transforms for Beam YAML: a provider file and the adapters it names.

A Beam YAML pipeline includes `PROVIDERS` (``providers: [{include: PATH}]``) and then uses
``ReadFromEndpoint``, ``Parse``, ``Dedup``, ``Route``, ``Enrich``, ``WindowedAggregate``,
``Sessionize``, ``ApplyChanges`` and ``WriteToEndpoint`` by name (see the README).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PROVIDERS"]

PROVIDERS = str(Path(__file__).with_name("providers.yaml"))
