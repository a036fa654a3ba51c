"""The row formats a data file may use, and turning one parsed row into a `Sample`.

  OpenAI chat     {"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}
  Anthropic       {"system": "...", "messages": [{"role": "user"|"assistant", "content": str | [blocks]}]}
  Alpaca          {"instruction": ..., "input": ..., "output": ...}
  classification  {"text": ..., "label": ...}
  OpenAI evals    {"input": [messages] | str, "ideal": str | [str, ...]}
  prompt/completion  trl's standard: {"prompt": str | [messages], "completion": str | [one assistant message]}
  ShareGPT        {"conversations": [{"from": "system"|"human"|"gpt", "value": ...}, ...], "system": optional}
                  (axolotl's and LLaMA-Factory's; "user"/"assistant" are accepted as `from` too)
  columns         any JSONL, CSV or TSV rows, read through a mapping: {"input": "question", "output": "answer"}
"""
from __future__ import annotations

import re

from harness.data.samples import Sample
from harness.errors import DataError

FORMATS = ("openai_chat", "anthropic", "alpaca", "classification", "openai_evals", "prompt_completion", "sharegpt",
           "columns")
REQUIRED_KEYS = {"openai_chat": ("messages",), "anthropic": ("messages",), "alpaca": ("instruction", "output"),
                 "classification": ("text", "label"), "openai_evals": ("input", "ideal"),
                 "prompt_completion": ("prompt", "completion"), "sharegpt": ("conversations",)}
# ShareGPT's speakers as the chat roles they stand for (the names FastChat, axolotl and LLaMA-Factory write)
SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant"}
COLUMN_ROLES = ("input", "output", "system")

_SURROGATE = re.compile("[\ud800-\udfff]")


class RowError(ValueError):
    """A row that cannot become a sample; `check` names the check it fails."""

    def __init__(self, check: str, message: str):
        super().__init__(message)
        self.check = check


def _text(content, where: str) -> str:
    """Message content as text: a string, or Anthropic/OpenAI content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(isinstance(b, dict) for b in content):
        parts = [b.get("text") for b in content if b.get("type", "text") == "text"]
        if parts and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise RowError("wrong_type", f"{where}: content must be a string or a list of text blocks "
                                 f"(got {type(content).__name__})")


def detect_format(row: dict) -> str | None:
    if "messages" in row:
        return "anthropic" if "system" in row else "openai_chat"
    if "conversations" in row:
        return "sharegpt"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "instruction" in row and "output" in row:
        return "alpaca"
    if "text" in row and "label" in row:
        return "classification"
    if "input" in row and "ideal" in row:
        return "openai_evals"
    return None


def _messages(raw, where: str, allowed=("system", "user", "assistant")) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        raise RowError("wrong_type", f"'{where}' must be a list of messages (got {type(raw).__name__})")
    if not raw:
        raise RowError("empty_content", f"'{where}' is an empty list")
    out = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise RowError("missing_keys", f"{where}[{i}] needs 'role' and 'content'")
        if m["role"] not in allowed:
            raise RowError("bad_role", f"{where}[{i}] has role {m['role']!r}; expected one of {', '.join(allowed)}")
        out.append((m["role"], _text(m["content"], f"{where}[{i}]")))
    return out


def _sharegpt(raw, system) -> list[tuple[str, str]]:
    if not isinstance(raw, list):
        raise RowError("wrong_type", f"'conversations' must be a list of turns (got {type(raw).__name__})")
    if not raw:
        raise RowError("empty_content", "'conversations' is an empty list")
    out = [("system", _text(system, "system"))] if isinstance(system, str) and system.strip() else []
    for i, turn in enumerate(raw):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise RowError("missing_keys", f"conversations[{i}] needs 'from' and 'value'")
        role = SHAREGPT_ROLES.get(turn["from"]) if isinstance(turn["from"], str) else None
        if role is None:
            raise RowError("bad_role", f"conversations[{i}] is from {turn['from']!r}; expected one of "
                                       f"{', '.join(SHAREGPT_ROLES)} (tool calls and observations are not supported)")
        out.append((role, _text(turn["value"], f"conversations[{i}]")))
    return out


def _prompt_completion(row: dict) -> tuple[list[tuple[str, str]], str]:
    """trl's prompt/completion rows: both strings (standard) or both message lists (conversational)."""
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, str) and isinstance(completion, str):
        return [("user", prompt)], completion
    if isinstance(prompt, list) and isinstance(completion, list):
        turns = _messages(prompt, "prompt")
        reply = _messages(completion, "completion")
        if len(reply) != 1 or reply[0][0] != "assistant":
            raise RowError("last_message", f"'completion' must be one assistant message (got "
                                           f"{', '.join(r for r, _ in reply)})")
        return turns, reply[0][1]
    raise RowError("wrong_type", f"'prompt' and 'completion' must both be strings or both be lists of messages "
                                 f"(got {type(prompt).__name__} and {type(completion).__name__})")


def _string(row: dict, key: str, what: str | None = None) -> str:
    value = row[key]
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise RowError("wrong_type", f"'{key}'{what or ''} must be a string (got {type(value).__name__})")


def _from_columns(row: dict, columns: dict) -> tuple[list[tuple[str, str]], str]:
    for role, names in columns.items():
        for name in names:
            if name not in row:
                raise RowError("missing_keys", f"missing key {name!r} (column mapping {role}={'+'.join(names)})")
    values = {role: [_string(row, n, f" ({role}=)") for n in names] for role, names in columns.items()}
    prompt = [("user", "\n".join(values["input"]))]
    if "system" in values and "\n".join(values["system"]).strip():
        prompt.insert(0, ("system", "\n".join(values["system"])))
    return prompt, "\n".join(values["output"])


def to_sample(row: dict, fmt: str, line: int = 0, source: str = "", columns: dict | None = None) -> Sample:
    """Normalise one parsed row of a known format; `RowError` (a ValueError) says what is wrong."""
    if fmt in ("openai_chat", "anthropic"):
        allowed = ("user", "assistant") if fmt == "anthropic" else ("system", "user", "assistant")
        msgs = _messages(row["messages"], "messages", allowed)
        if fmt == "anthropic" and row.get("system"):
            msgs.insert(0, ("system", _text(row["system"], "system")))
        if msgs[-1][0] != "assistant":
            raise RowError("last_message", f"last message must be from the assistant (got {msgs[-1][0]!r})")
        prompt, answer = msgs[:-1], msgs[-1][1]
    elif fmt == "alpaca":
        instruction, answer = _string(row, "instruction"), _string(row, "output")
        extra = _string(row, "input") if row.get("input") is not None else ""
        prompt = [("user", instruction + (f"\n\n{extra}" if extra.strip() else ""))]
    elif fmt == "classification":
        if not isinstance(row["label"], (str, int, bool)):
            raise RowError("wrong_type", f"'label' must be a string or an integer (got {type(row['label']).__name__})")
        prompt, answer = [("user", _string(row, "text"))], str(row["label"])
    elif fmt == "openai_evals":
        raw = row["input"]
        prompt = [("user", raw)] if isinstance(raw, str) else _messages(raw, "input")
        ideal = row["ideal"]
        if isinstance(ideal, list):
            ideal = ideal[0] if ideal else None
        if not isinstance(ideal, str):
            raise RowError("wrong_type", "'ideal' must be a string or a non-empty list of strings")
        answer = ideal
    elif fmt == "prompt_completion":
        prompt, answer = _prompt_completion(row)
    elif fmt == "sharegpt":
        msgs = _sharegpt(row["conversations"], row.get("system"))
        if msgs[-1][0] != "assistant":
            raise RowError("last_message", f"the last turn must be from gpt, the assistant (got {msgs[-1][0]!r})")
        prompt, answer = msgs[:-1], msgs[-1][1]
    elif fmt == "columns":
        prompt, answer = _from_columns(row, columns or {})
    else:
        raise ValueError(f"unknown format {fmt!r}")
    if not prompt or prompt[-1][0] != "user":
        raise RowError("bad_role", "the prompt must end with a user message")
    if any(r == "system" for r, _ in prompt[1:]):
        raise RowError("bad_role", "a system message may only come first")
    if any(not c.strip() for _, c in prompt):
        raise RowError("empty_content", "a message has empty content")
    if not answer.strip():
        raise RowError("empty_content", "the answer is empty")
    for _, c in prompt + [("", answer)]:
        if bad := _SURROGATE.search(c):
            raise RowError("invalid_utf8", f"escaped lone surrogate \\u{ord(bad.group()):04x}: UTF-8 cannot encode it")
    return Sample(messages=tuple(prompt), answer=answer, line=line, source=source)


def parse_columns(text: str) -> dict[str, list[str]]:
    """'input=question+answer_a,output=correct_answer' -> {"input": [...], "output": [...]}."""
    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        role, sep, names = part.partition("=")
        if not sep:
            raise DataError(f"column mapping {part!r} needs role=column, e.g. input=question,output=right_answer")
        mapping[role.strip()] = names
    return column_mapping(mapping)


def column_mapping(columns: dict) -> dict[str, list[str]]:
    """Validate a mapping {role: column | [columns] | "a+b"}; several input columns are joined by newlines."""
    unknown = sorted(set(columns) - set(COLUMN_ROLES))
    if unknown or "input" not in columns or "output" not in columns:
        raise DataError(f"column mapping needs input= and output= (and optionally system=), got "
                        f"{', '.join(map(str, columns)) or 'nothing'}; e.g. input=question,output=right_answer")
    out = {}
    for role in COLUMN_ROLES:
        if role in columns:
            names = columns[role].split("+") if isinstance(columns[role], str) else list(columns[role])
            names = [n.strip() for n in names if isinstance(n, str) and n.strip()]
            if not names:
                raise DataError(f"column mapping {role}= names no column")
            out[role] = names
    return out
