"""Reading the YAML (or JSON) text of specs and rules, refusing aliases and oversize text.

YAML aliases (``*name``) let a few hundred bytes stand for billions of nodes once a value is
turned into text; specs and rules never need them, so `load_yaml` refuses them as it meets
them, before anything is built. Anchors alone (``&name``) are harmless and pass.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_YAML_CHARS", "NoAliasLoader", "YamlError", "load_yaml"]

MAX_YAML_CHARS = 1_000_000


class YamlError(ValueError):
    """YAML text that cannot be read as a spec; the message says why."""


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader that raises `YamlError` at the first alias."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YamlError(
                f"YAML aliases (*{event.anchor}) are not allowed, line "
                f"{event.start_mark.line + 1}: write the value out"
            )
        return super().compose_node(parent, index)


def load_yaml(text: str) -> Any:
    """Parses YAML or JSON text with `NoAliasLoader`.

    Raises:
        YamlError: the text is over `MAX_YAML_CHARS`, holds an alias, or is not YAML.
    """
    if len(text) > MAX_YAML_CHARS:
        raise YamlError(f"the text has {len(text)} characters; at most {MAX_YAML_CHARS}")
    try:
        return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 (a safe loader)
    except yaml.YAMLError as exc:
        raise YamlError(f"not valid YAML or JSON: {exc}") from None
    except RecursionError:
        raise YamlError("not valid YAML or JSON: nested too deeply") from None
