"""Prompt files (prompts/*.md) → langchain ChatPromptTemplate plus their version.

File format: YAML front matter with at least ``version``; then message blocks introduced by
``<!-- role: system -->`` / ``<!-- role: human -->``. Message bodies are f-string templates (literal braces
doubled; every placeholder must be one of the front matter's ``variables``, checked when the file is read). The
version is stored with every draft, so a reply can be traced to its prompt. (prompts/classify.md belongs to the
LLM classifier member, triage/classify/llm_member.py, which triage calls only with TRIAGE_LLM_CLASSIFY=true; its
version is in each suggestion's ``versions.llm``.)
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
    _check_placeholders(name, meta, messages)
    return PromptFile(name=name, version=version, meta=meta, messages=tuple(messages))


_PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")


def _check_placeholders(name: str, meta: dict, messages: list[tuple[str, str]]) -> None:
    """Every {placeholder} must be one of the front matter's ``variables``: a literal brace left single
    ({"落款": "单位"}) used to fail only when the LLM was called, and read as 大模型服务不可用 (KeyError)."""
    declared = meta.get("variables")
    if declared is None:
        return
    allowed = {v.strip() for v in (declared.split(",") if isinstance(declared, str) else declared)}
    for role, content in messages:
        scrubbed = content.replace("{{", "").replace("}}", "")
        for m in _PLACEHOLDER.finditer(scrubbed):
            if m.group(1).strip() not in allowed:
                line = content[:content.find(m.group(0))].count("\n") + 1 if m.group(0) in content else 0
                raise PromptFileError(
                    f"{name}: {role} 段第 {line} 行的 {{{m.group(1)}}} 不是声明的变量（variables: "
                    f"{', '.join(sorted(allowed))}）；文字里的花括号要写成 {{{{ 和 }}}} / unknown placeholder "
                    f"{{{m.group(1)}}}: literal braces must be doubled")


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
