"""Answer extraction helpers shared by the tasks (GSM8K-style and exact)."""

from __future__ import annotations

import re

ANSWER_MARKER = re.compile(r"the answer is", re.IGNORECASE)
# A number: optional sign (not when it is a binary minus right after a digit),
# digits with optional thousands commas, optional decimal part.
NUMBER = re.compile(r"(?<![\d.])-?\d[\d,]*(?:\.\d+)?")


def _clean_number(raw: str) -> str:
    """Drop thousands commas and trailing commas/periods: ``"1,234."`` -> ``"1234"``."""
    return raw.replace(",", "").rstrip(".")


def extract_last_number(text: str) -> str | None:
    """Return the last number in ``text`` (commas stripped) or ``None``."""
    matches = NUMBER.findall(text)
    return _clean_number(matches[-1]) if matches else None


def extract_gsm8k(text: str) -> str | None:
    """GSM8K-style extraction.

    The first number after the last "The answer is" (case-insensitive) if
    there is one, else the last number anywhere in the text, else ``None``.
    Thousands commas and a trailing period are stripped.
    """
    markers = list(ANSWER_MARKER.finditer(text))
    if markers:
        match = NUMBER.search(text, markers[-1].end())
        if match is not None:
            return _clean_number(match.group())
    return extract_last_number(text)


def normalize_whitespace(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def is_number(text: str) -> bool:
    """True when ``text`` (stripped, a trailing period dropped) is one number such as ``"-1,234.5"``."""
    return NUMBER.fullmatch(text.strip().rstrip(".")) is not None


def extract_exact(text: str) -> str | None:
    """Whitespace-normalised text, or ``None`` when it is empty."""
    normalized = normalize_whitespace(text)
    return normalized or None
