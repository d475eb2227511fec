"""Callers' numbers kept out of the knowledge base.

A past case's text is shown as evidence beside other complaints, to every dispatcher and to the unit's staff: a
closed complaint carrying its caller's mobile or ID number showed it, verbatim, as the top similar case of the
next complaint. The number stays on the complaint itself (the unit calls the caller back); the knowledge base
keeps the text with placeholders, as the 12345 platform's own exports do ([电话]).
"""

from __future__ import annotations

import re

_ID_CARD = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[-\s]?)?1[3-9]\d[-\s]?\d{4}[-\s]?\d{4}(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)0\d{2,3}[-－\s]\d{7,8}(?!\d)|(?<!\d)0\d{2,3}\d{7,8}(?!\d)")


def mask_personal_numbers(text: str) -> str:
    """ID-card numbers → [身份证号]; mobile and landline numbers (with an area code) → [电话]."""
    text = _ID_CARD.sub("[身份证号]", text)
    text = _MOBILE.sub("[电话]", text)
    return _LANDLINE.sub("[电话]", text)
