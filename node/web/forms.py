"""Entry forms generated from the contracts: one field per property of the schema.

The schema is the form's source of truth: titles and descriptions label the fields, enums
become choices (labelled from the ``value=标签`` pairs the descriptions carry), formats pick
the input type, and validation messages come from the contract itself on submit.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from contracts.registry import ContractVersion

__all__ = [
    "CHECKBOX",
    "FormField",
    "Refinement",
    "fields_for",
    "parse_form",
    "refine",
    "refinement",
]

CHINA = timezone(timedelta(hours=8))
_PAIR = re.compile(r"([a-z0-9_]+)\s*[=＝]\s*([^；;，,。\s]+)")


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    title: str
    help: str
    kind: str  # text, textarea, select, integer, date, datetime, checkbox, json
    required: bool
    options: list[tuple[str, str]] = field(default_factory=list)
    max_length: int | None = None
    private: str | None = None


def fields_for(cv: ContractVersion) -> list[FormField]:
    schema = cv.schema
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        out.append(_field(name, prop, name in required))
    return out


def _field(name: str, prop: dict[str, Any], required: bool) -> FormField:
    title = str(prop.get("title", name))
    help_text = str(prop.get("description", ""))
    kind = prop.get("type")
    options: list[tuple[str, str]] = []
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if "enum" in prop:
        labels = dict(_PAIR.findall(help_text))
        options = [(str(v), f"{labels.get(str(v), v)}") for v in prop["enum"] if v is not None]
        form_kind = "select"
    elif kind == "integer":
        form_kind = "integer"
    elif kind == "boolean":
        form_kind = "checkbox"
    elif kind in ("array", "object"):
        form_kind = "json"
    elif prop.get("format") == "date-time":
        form_kind = "datetime"
    elif prop.get("format") == "date":
        form_kind = "date"
    elif int(prop.get("maxLength", 0)) > 200:
        form_kind = "textarea"
    else:
        form_kind = "text"
    return FormField(
        name,
        title,
        help_text,
        form_kind,
        required,
        options,
        prop.get("maxLength"),
        prop.get("x-privacy"),
    )


@dataclass(frozen=True, slots=True)
class Refinement:
    """A choice that refines another: each value of ``fine`` belongs to one value of
    ``coarse`` (opinion 2.0's ``subcategory`` and ``category``), named in the contract by
    the fine property's ``x-category`` map. A person picks the fine value; the coarse one
    follows from it."""

    fine: str
    coarse: str
    parents: dict[str, str]


def refinement(cv: ContractVersion) -> Refinement | None:
    """The contract's refined choice, if it has one."""
    properties = cv.schema.get("properties", {})
    for name, prop in properties.items():
        parents = prop.get("x-category") if isinstance(prop, dict) else None
        if isinstance(parents, dict) and "category" in properties and name != "category":
            return Refinement(name, "category", {str(k): str(v) for k, v in parents.items()})
    return None


def refine(cv: ContractVersion, record: dict[str, Any]) -> dict[str, str]:
    """Fill the coarse choice from the fine one where it was left empty (in place); the
    errors, by field, where both were given and disagree."""
    found = refinement(cv)
    if found is None or not isinstance(record.get(found.fine), str):
        return {}
    parent = found.parents.get(record[found.fine])
    if parent is None:
        return {}  # not a value of the contract: its own validation says so
    given = record.setdefault(found.coarse, parent)
    if given != parent:
        return {found.coarse: f"{record[found.fine]} 属于 {parent} / belongs to {parent}"}
    return {}


CHECKBOX = "_checkbox"
"""The hidden field naming each checkbox a form shows: a browser sends no unticked box,
so this tells a box left unticked (false) from a box the form did not have."""


def parse_form(
    form: dict[str, str], fields: list[FormField], checkboxes: Collection[str] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    """``(record, errors)``: typed values for filled fields; empty fields are left out,
    but a checkbox named in ``checkboxes`` (shown on the form) and not sent is false."""
    record: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        raw = (form.get(f.name) or "").strip()
        if f.kind == "checkbox":
            if f.name in form:
                record[f.name] = form.get(f.name) in ("on", "true", "1")
            elif f.name in checkboxes:
                record[f.name] = False
            continue
        if not raw:
            continue
        try:
            record[f.name] = _convert(f.kind, raw)
        except ValueError as exc:
            errors[f.name] = str(exc)
    return record, errors


def _convert(kind: str, raw: str) -> Any:
    if kind == "integer":
        if not re.fullmatch(r"-?\d{1,15}", raw):
            raise ValueError("请输入整数 / an integer")
        return int(raw)
    if kind == "datetime":
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=CHINA)  # the desk is used in China Standard Time
        try:
            utc = moment.astimezone(UTC)
        except OverflowError as exc:  # a time on the edge of year 1 or 9999
            raise ValueError("时间超出范围 / time out of range") from exc
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    if kind == "json":
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"JSON: {exc}") from exc
    return raw
