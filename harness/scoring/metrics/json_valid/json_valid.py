"""json_valid: format compliance, does the prediction parse as JSON? As a local `evaluate` module.

A prediction scores 1.0 when json.loads accepts it (after stripping whitespace;
NaN/Infinity are rejected, as in strict JSON) and, when given:
  - top_level="object" | "array": the parsed value has that type;
  - schema=<dict or JSON text>: the value validates against that JSON Schema. This needs
    the optional `jsonschema` package; without it a schema is refused with a clear error.
  - strip_code_fence=True: a surrounding markdown code fence (```json ... ```) is removed first.
References are ignored (format compliance only) but must be given, one per prediction.

compute(predictions, references, schema=None, top_level=None, strip_code_fence=False) ->
    {"json_valid": mean, "per_example": [0.0 | 1.0, ...]}
"""
import json
import re

import datasets
import evaluate

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n?(.*?)\n?```$", re.S)
_TOP = {"object": dict, "array": list}
_NO_JSONSCHEMA = ("json_valid: checking predictions against a JSON schema needs the 'jsonschema' package, which is "
                  "not installed (pip install jsonschema); without schema= json_valid only checks that they parse")

_DESCRIPTION = "Format compliance: 1 if the prediction parses as JSON (optionally: top-level type, JSON schema)."
_KWARGS = """
Args:
    predictions: list of generated strings.
    references: list of strings (ignored).
    schema: optional JSON Schema (dict or JSON text); needs the jsonschema package.
    top_level: optional "object" or "array".
    strip_code_fence: remove a surrounding ``` fence first (default False).
Returns:
    json_valid: fraction of valid predictions.
    per_example: 1.0 or 0.0 per example.
"""


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _validator(schema):
    if schema is None:
        return None
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise ValueError(f"json_valid: schema is not valid JSON text: {e}") from None
    try:
        import jsonschema
    except ImportError:
        raise ImportError(_NO_JSONSCHEMA) from None
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        raise ValueError(f"json_valid: invalid JSON schema: {e.message}") from None
    return cls(schema)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS)
class JsonValid(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS,
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Value("string")}),
        )

    def check_config(self, schema=None, top_level=None, **_):
        """Called by harness.scoring.metrics.load: catch a wrong configuration before any scoring."""
        if top_level not in (None, *_TOP):
            raise ValueError(f"json_valid: top_level must be 'object' or 'array', not {top_level!r}")
        _validator(schema)

    def _compute(self, predictions, references, schema=None, top_level=None, strip_code_fence=False):
        if top_level not in (None, *_TOP):
            raise ValueError(f"json_valid: top_level must be 'object' or 'array', not {top_level!r}")
        validator = _validator(schema)
        per_example = []
        for text in predictions:
            text = (text or "").strip()
            if strip_code_fence:
                m = _FENCE.match(text)
                text = m.group(1).strip() if m else text
            try:
                value = json.loads(text, parse_constant=_reject_constant)
            except ValueError:
                per_example.append(0.0)
                continue
            ok = top_level is None or isinstance(value, _TOP[top_level])
            if ok and validator is not None:
                ok = validator.is_valid(value)
            per_example.append(float(ok))
        value = sum(per_example) / len(per_example) if per_example else float("nan")
        return {"json_valid": value, "per_example": per_example}
