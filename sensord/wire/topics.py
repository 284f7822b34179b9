"""Routes: which bundle scores a topic, and which stream a topic is.

A route binds an MQTT topic filter (``+`` one level, ``#`` the rest) to a bundle. The
stream id is made from the topic by a template: ``{wild}`` (the levels the wildcards
matched, joined by ``.``; the default), ``{topic}`` (the whole topic, ``/`` turned into
``.``) or ``{N}`` (topic level N, from 0; negative counts from the end). A stream id becomes
a topic level of sensord's own output (``<prefix>/alerts/<stream>``), so it must be a safe
level: letters, digits, ``_ . : -``, at most 128 characters, not starting with ``$``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sensord.errors import StreamIdError

_SAFE_LEVEL = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def safe_topic_level(text: str) -> bool:
    """True if ``text`` can stand as one level of a topic sensord publishes."""
    return bool(_SAFE_LEVEL.match(text)) and not text.startswith("$")


def check_topic_filter(topic: str) -> None:
    """Raise ValueError unless ``topic`` is a valid MQTT subscription filter."""
    if not topic or len(topic.encode()) > 65535 or "\0" in topic:
        raise ValueError("a topic filter must be 1 to 65535 bytes without NUL")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError("'#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ValueError("'+' must be a whole level")


def check_stream_template(template: str) -> None:
    """Raise ValueError unless every placeholder of ``template`` is known."""
    names = _PLACEHOLDER.findall(template)
    if not names:
        raise ValueError("the template needs a placeholder: {wild}, {topic} or {N}")
    for name in names:
        if name not in ("wild", "topic") and not re.fullmatch(r"-?\d+", name):
            raise ValueError(f"unknown placeholder {{{name}}}; use {{wild}}, {{topic}} or {{N}}")
    literal = _PLACEHOLDER.sub("", template)
    if literal and not re.fullmatch(r"[A-Za-z0-9_.:-]*", literal):
        raise ValueError("text around placeholders must be letters, digits, _ . : -")


@dataclass(frozen=True)
class TopicFilter:
    """A compiled MQTT filter that also says which levels its wildcards matched."""

    filter: str

    def match(self, topic: str) -> list[str] | None:
        """The levels matched by wildcards, or None if ``topic`` does not match."""
        levels = topic.split("/")
        wild: list[str] = []
        pattern = self.filter.split("/")
        # Per MQTT, wildcards at the first level do not match topics starting with '$'.
        if topic.startswith("$") and pattern[0] in ("+", "#"):
            return None
        for i, part in enumerate(pattern):
            if part == "#":
                wild.extend(levels[i:])
                return wild
            if i >= len(levels):
                return None
            if part == "+":
                wild.append(levels[i])
            elif part != levels[i]:
                return None
        return wild if len(levels) == len(pattern) else None


def stream_id(template: str, topic: str, wild: list[str]) -> str:
    """Fill ``template`` from ``topic``; raise StreamIdError if the id is not safe."""
    levels = topic.split("/")

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "wild":
            return ".".join(wild)
        if name == "topic":
            return ".".join(levels)
        index = int(name)
        if not -len(levels) <= index < len(levels):
            raise StreamIdError(f"topic has no level {index}")
        return levels[index]

    result = _PLACEHOLDER.sub(fill, template)
    if not safe_topic_level(result):
        raise StreamIdError(f"stream id {result[:80]!r} is not a safe topic level")
    return result
