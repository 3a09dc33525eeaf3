"""The one way scenario YAML is read (files and `--set` values): safe, small and plain.

- Only plain data: strings, integers, floats, booleans, null, lists and mappings, and the `<<:` merge
  key. Any other tag (`!!set`, whose order changes with PYTHONHASHSEED; `!!binary`; `!!timestamp`;
  `!!omap`; application tags) is refused, and an unquoted date stays a string.
- A key given twice in one mapping is refused (YAML would keep the last one silently); keys merged in
  with `<<:` may be overridden, as YAML intends.
- Aliases are counted as what they expand to: a document that expands to more than MAX_VALUES values
  (an "alias bomb": a few hundred bytes that unfold into billions of values) or that contains itself is
  refused before anything is built from it, whatever key it hides under.
"""
from __future__ import annotations

from typing import Any

import yaml

MAX_VALUES = 100_000  # every scalar, list and mapping after expanding aliases; real scenarios have < 1000

_STD = "tag:yaml.org,2002:"
ALLOWED_TAGS = {_STD + t for t in ("str", "int", "float", "bool", "null", "seq", "map", "merge")}


class YamlError(ValueError):
    """Not acceptable YAML; the message starts with where (`line L, column C: `) when known."""


class _PlainLoader(yaml.SafeLoader):
    """SafeLoader minus the non-plain types, with duplicate keys refused."""

    # Implicit resolution as SafeLoader's, without timestamps: `2026-12-01` stays the string it reads as.
    yaml_implicit_resolvers = {
        ch: [(tag, rx) for tag, rx in resolvers if tag != _STD + "timestamp"]
        for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == _STD + "merge":
                    continue  # `<<:` pulls keys in; explicit keys beside it override them
                key = self.construct_object(key_node, deep=deep)
                try:
                    duplicate = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _where(node) -> str:
    m = node.start_mark
    return f"line {m.line + 1}, column {m.column + 1}: "


def _check_nodes(root) -> None:
    """Refuse non-plain tags, self-containing aliases and documents that expand past MAX_VALUES.
    Each distinct node is visited once (its expanded size memoised), so checking a bomb is cheap."""
    size: dict[int, int] = {}
    open_nodes: set[int] = set()

    def visit(node) -> int:
        key = id(node)
        if key in size:
            return size[key]
        if key in open_nodes:
            raise YamlError(f"{_where(node)}an alias refers to a value that contains it (a recursive alias)")
        if node.tag not in ALLOWED_TAGS:
            tag = node.tag.replace(_STD, "!!")
            raise YamlError(f"{_where(node)}the tag {tag} is not allowed (only plain strings, numbers, booleans, "
                            "null, lists and mappings)")
        open_nodes.add(key)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            n += sum(visit(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            n += sum(visit(k) + visit(v) for k, v in node.value)
        open_nodes.discard(key)
        if n > MAX_VALUES:
            raise YamlError(f"{_where(node)}expands to more than {MAX_VALUES:,} values once its aliases are "
                            "expanded (an alias bomb?); write the values out")
        size[key] = n
        return n

    visit(root)


def load_yaml(text: str) -> Any:
    """The data of one YAML document, or YamlError (a message to show after the file's name)."""
    loader = _PlainLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise YamlError(f"{where}{getattr(exc, 'problem', None) or exc}") from None
    except RecursionError:
        raise YamlError("nested too deeply") from None
    finally:
        loader.dispose()
