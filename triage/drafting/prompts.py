"""Prompt files (prompts/*.md) → langchain ChatPromptTemplate plus their version.

File format: YAML front matter with at least ``version``; then message blocks introduced by
``<!-- role: system -->`` / ``<!-- role: human -->``. Message bodies are f-string templates (literal braces
doubled). The version is stored with every draft and suggestion so a reply can be traced to its prompt.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from langchain_core.prompts import ChatPromptTemplate

_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
_ROLE = re.compile(r"^<!--\s*role:\s*(system|human|ai)\s*-->\s*$", re.M)


class PromptFileError(ValueError):
    pass


@dataclass(frozen=True)
class PromptFile:
    name: str
    version: str
    meta: dict
    messages: tuple[tuple[str, str], ...]

    def chat_template(self) -> ChatPromptTemplate:
        return ChatPromptTemplate.from_messages(list(self.messages), template_format="f-string")


def parse_prompt(text: str, name: str = "<string>") -> PromptFile:
    m = _FRONT.match(text)
    if not m:
        raise PromptFileError(f"{name}: missing front matter (--- version: … ---)")
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as exc:
        raise PromptFileError(f"{name}: front matter is not valid YAML: {exc}") from exc
    version = str(meta.get("version") or "").strip()
    if not version:
        raise PromptFileError(f"{name}: front matter has no version")
    body = text[m.end():]
    marks = list(_ROLE.finditer(body))
    if not marks:
        raise PromptFileError(f"{name}: no <!-- role: … --> blocks")
    messages = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(body)
        content = body[mark.end():end].strip("\n")
        messages.append((mark.group(1), content))
    return PromptFile(name=name, version=version, meta=meta, messages=tuple(messages))


@lru_cache(maxsize=16)
def _load(path: str, mtime: float) -> PromptFile:
    p = Path(path)
    return parse_prompt(p.read_text(encoding="utf-8"), p.name)


def load_prompt(prompts_dir: Path, name: str) -> PromptFile:
    """prompts_dir/name.md (re-read when the file changes, so editing a prompt needs no restart)."""
    path = Path(prompts_dir) / (name if name.endswith(".md") else f"{name}.md")
    if not path.exists():
        raise PromptFileError(f"prompt file not found: {path}")
    return _load(str(path), path.stat().st_mtime)
