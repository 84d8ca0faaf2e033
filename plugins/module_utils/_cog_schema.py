# -*- coding: utf-8 -*-
# Copyright: homelab.gpu contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A cog model's input schema: read it, describe its inputs, fit a prediction's input to it.

Private to this collection: no API promise.

A current cog server (coglet) serves the OpenAPI schema that ``cog build`` wrote into the image at
``GET /openapi.json`` and validates every prediction against ``components.schemas.Input``: it answers HTTP 422
for ``"n": "2048"`` when ``n`` is an integer, and silently ignores an input name the model does not have. An
Ansible task often holds numbers as strings (templated values), so the modules fit the input to the schema
before they send it: strings become the declared integer, number or boolean, and unknown names, values that
cannot be converted, values outside the declared choices or bounds and missing required inputs are refused with
a message that names the input.

Modes (option ``schema`` of cog_predict, ``smoke_schema`` of cog_model):

- ``coerce``: convert, then check; the default.
- ``strict``: check only; a value of the wrong JSON type is refused instead of converted.
- ``raw``: send the input untouched; the schema is not read.

Without a schema (an older server that has no ``/openapi.json``, or an image built without one) the input is
sent as given and the result says so.
"""

from __future__ import annotations

import json
import math
import re

from ansible_collections.homelab.gpu.plugins.module_utils import _cog_http
from ansible_collections.homelab.gpu.plugins.module_utils._common import cut

MODES = ('coerce', 'strict', 'raw')
SCHEMA_PATH = '/openapi.json'
# The longest the schema request may take; it is small and served from memory.
FETCH_TIMEOUT = 10.0

_INTEGER_RE = re.compile(r'[+-]?[0-9]+')
_NUMBER_RE = re.compile(r'[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?')
# The strings that Ansible itself reads as booleans (ansible.module_utils.parsing.convert_bool).
_TRUE = frozenset(('yes', 'on', '1', 'true', 'y', 't'))
_FALSE = frozenset(('no', 'off', '0', 'false', 'n', 'f'))
_REF_PREFIX = '#/components/schemas/'


# ---------------------------------------------------------------- reading the schema

def fetch(base_url, timeout=FETCH_TIMEOUT, validate_certs=True, username=None, password=None):
    """GET the server's OpenAPI schema; return ``(schema dict or None, note or None)``. Never raises.

    The whole answer must come within ``timeout`` seconds (a server that trickles it is left behind). The note
    says why there is no schema: no answer, an HTTP error (coglet answers 503 when the image carries no
    schema), a body that is not JSON, or a schema without an ``Input`` component. ``username`` and ``password``
    are the basic credentials of the prediction that follows, if any.
    """
    url = base_url.rstrip('/') + SCHEMA_PATH
    code, body, error = _cog_http.get(url, timeout, headers={'Accept': 'application/json'},
                                      validate_certs=validate_certs, username=username, password=password)
    if error is not None:
        return None, 'no schema at %s: %s' % (url, error)
    if code != 200:
        return None, 'no schema at %s: HTTP %s %s' % (url, code, body.strip()[:200])
    return parse_schema(body, url, code)


def parse_schema(body, where='the server', code=200):
    """``(schema, None)`` for a body that holds an OpenAPI schema with an Input component, else ``(None, note)``."""
    if code != 200:
        return None, 'no schema at %s: HTTP %s' % (where, code)
    try:
        schema = json.loads(body)
    except ValueError:
        return None, 'no schema at %s: the answer is not JSON' % where
    if not isinstance(input_component(schema), dict):
        return None, 'no schema at %s: it has no components.schemas.Input' % where
    return schema, None


def input_component(schema):
    if not isinstance(schema, dict):
        return None
    components = schema.get('components')
    schemas = components.get('schemas') if isinstance(components, dict) else None
    return schemas.get('Input') if isinstance(schemas, dict) else None


def resolve(schema, node, depth=0):
    """The property ``node`` with ``$ref`` and single-entry ``allOf`` merged in (cog writes choices that way)."""
    if not isinstance(node, dict) or depth > 8:
        return node if isinstance(node, dict) else {}
    merged = dict((k, v) for k, v in node.items() if k not in ('$ref', 'allOf'))
    parts = []
    if isinstance(node.get('$ref'), str):
        parts.append(node['$ref'])
    for entry in node.get('allOf') or []:
        if isinstance(entry, dict):
            parts.append(entry.get('$ref') if isinstance(entry.get('$ref'), str) else entry)
    for part in parts:
        if isinstance(part, str):
            if not part.startswith(_REF_PREFIX):
                continue
            part = ((schema.get('components') or {}).get('schemas') or {}).get(part[len(_REF_PREFIX):])
        target = resolve(schema, part, depth + 1)
        for key, value in target.items():
            # The property's own title, default and description win over the enum component's.
            merged.setdefault(key, value)
    return merged


def input_fields(schema):
    """The model's inputs in the model's order: a list of dicts.

    Each has ``name``, ``type`` (the JSON type: integer, number, boolean, string, array, object, or ``any``),
    ``default`` (None when there is none), ``has_default``, ``required``, ``nullable``, ``choices`` (a list, or
    None), ``minimum``, ``maximum``, ``format`` and ``description``.
    """
    component = input_component(schema) or {}
    required = set(component.get('required') or [])
    properties = component.get('properties') or {}
    fields = []
    for position, (name, raw) in enumerate(properties.items()):
        prop = resolve(schema, raw)
        kind = prop.get('type')
        if not isinstance(kind, str):
            kind = 'any'
        choices = prop.get('enum')
        order = prop.get('x-order')
        fields.append({
            'name': name,
            'type': kind,
            'default': prop.get('default'),
            'has_default': 'default' in prop,
            'required': name in required,
            'nullable': bool(prop.get('nullable')),
            'choices': list(choices) if isinstance(choices, list) else None,
            'minimum': prop.get('minimum'),
            'maximum': prop.get('maximum'),
            'format': prop.get('format'),
            'description': prop.get('description'),
            '_order': (order if isinstance(order, int) and not isinstance(order, bool) else position, position),
        })
    fields.sort(key=lambda f: f['_order'])
    for field in fields:
        del field['_order']
    return fields


def describe(fields):
    """What a user needs to call the model: ``name``, ``type``, ``default``, ``required`` and ``choices``."""
    return [{'name': f['name'], 'type': f['type'], 'default': f['default'], 'required': f['required'],
             'choices': f['choices']} for f in fields]


def summary(fields):
    """One line that lists the inputs: ``prompt (string, required), n (integer, default 16)``."""
    parts = []
    for field in fields:
        said = [field['type']]
        if field['choices'] is not None:
            said.append('one of %s' % ', '.join(json.dumps(c) for c in field['choices']))
        if field['required']:
            said.append('required')
        elif field['has_default'] and field['default'] is not None:
            said.append('default %s' % json.dumps(field['default']))
        parts.append('%s (%s)' % (field['name'], ', '.join(said)))
    return ', '.join(parts) or '(none)'


# ---------------------------------------------------------------- fitting an input to the schema

def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _convert(kind, value, coerce):
    """``(value, None)`` converted to the JSON type ``kind``, or ``(None, why)``."""
    if kind == 'integer':
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if coerce and isinstance(value, str) and _INTEGER_RE.fullmatch(value.strip()):
            try:
                return int(value.strip()), None
            except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
                return None, 'is an integer of %d digits, too long to convert' % len(value.strip())
        if coerce and isinstance(value, float) and value.is_integer():
            return int(value), None
        return None, 'is not an integer'
    if kind == 'number':
        if _is_number(value) and not (isinstance(value, float) and not math.isfinite(value)):
            return value, None
        if coerce and isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
            number = float(value.strip())
            if math.isfinite(number):
                return number, None
        return None, 'is not a number'
    if kind == 'boolean':
        if isinstance(value, bool):
            return value, None
        if coerce and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE, None
        return None, 'is not a boolean (true or false)'
    if kind == 'string':
        if isinstance(value, str):
            return value, None
        # A template that renders "1800" may reach the module as the number 1800.
        if coerce and _is_number(value):
            return str(value), None
        return None, 'is not a string'
    if kind == 'array':
        return (value, None) if isinstance(value, list) else (None, 'is not a list')
    if kind == 'object':
        return (value, None) if isinstance(value, dict) else (None, 'is not a dict')
    return value, None


def _same_choice(value, choice):
    return value == choice and isinstance(value, bool) == isinstance(choice, bool)


def _check_one(field, value, coerce):
    """``(value to send, error or None)`` for one input."""
    name = field['name']
    if value is None:
        if field['nullable']:
            return None, None
        return None, 'input %s is null, but the model does not accept null for it' % name
    converted, why = _convert(field['type'], value, coerce)
    if why:
        return None, 'input %s: %s %s (the model declares %s)' % (name, cut(json.dumps(value)), why, field['type'])
    if field['choices'] is not None and not any(_same_choice(converted, c) for c in field['choices']):
        return None, 'input %s: %s is not one of %s' % (
            name, cut(json.dumps(converted)), ', '.join(json.dumps(c) for c in field['choices']))
    if _is_number(converted):
        low, high = field['minimum'], field['maximum']
        if _is_number(low) and converted < low:
            return None, 'input %s: %s is less than the minimum of %s' % (name, cut(json.dumps(converted)), low)
        if _is_number(high) and converted > high:
            return None, 'input %s: %s is greater than the maximum of %s' % (name, cut(json.dumps(converted)), high)
    return converted, None


def fit(fields, inputs, mode='coerce'):
    """Fit ``inputs`` (a dict) to the model's ``fields``; return ``(inputs to send, converted, errors)``.

    ``converted`` lists each conversion as ``name: "12" -> 12``. ``errors`` lists every problem, one message
    each; the input must not be sent when there is one.
    """
    if mode not in MODES:
        raise ValueError('mode must be one of %s, got %r' % (', '.join(MODES), mode))
    if mode == 'raw':
        return dict(inputs), [], []
    coerce = mode == 'coerce'
    by_name = dict((f['name'], f) for f in fields)
    out, converted, errors = {}, [], []
    unknown = [name for name in inputs if name not in by_name]
    if unknown:
        errors.append('the model has no input %s; its inputs are: %s'
                      % (', '.join(sorted(unknown)), summary(fields)))
    for name, value in inputs.items():
        field = by_name.get(name)
        if field is None:
            continue
        sent, error = _check_one(field, value, coerce)
        if error:
            errors.append(error)
            continue
        if type(sent) is not type(value):  # pylint: disable=unidiomatic-typecheck
            converted.append('%s: %s -> %s' % (name, json.dumps(value), json.dumps(sent)))
        out[name] = sent
    missing = [f['name'] for f in fields if f['required'] and f['name'] not in inputs]
    if missing:
        errors.append('required input %s missing' % ', '.join(missing)
                      if len(missing) == 1 else 'required inputs %s missing' % ', '.join(missing))
    return out, converted, errors


def prepare(base_url, inputs, mode='coerce', validate_certs=True, timeout=FETCH_TIMEOUT, username=None, password=None):
    """Read the schema of the model at ``base_url`` and fit ``inputs`` to it.

    Return ``(inputs to send, report, error or None)``. ``report`` is ``{mode, available, note, converted}``:
    ``available`` says whether the model served a schema, ``note`` why not (or that the input went untouched),
    ``converted`` the conversions made. ``error`` names every input that does not fit, in one message.
    """
    report = {'mode': mode, 'available': None, 'note': None, 'converted': []}
    if mode == 'raw':
        report['note'] = 'the input was sent as given (schema: raw)'
        return dict(inputs), report, None
    schema, note = fetch(base_url, timeout=min(timeout, FETCH_TIMEOUT), validate_certs=validate_certs,
                         username=username, password=password)
    if schema is None:
        report.update(available=False, note='%s; the input was sent as given' % note)
        return dict(inputs), report, None
    report['available'] = True
    sent, converted, errors = fit(input_fields(schema), inputs, mode)
    report['converted'] = converted
    if errors:
        return sent, report, 'the input does not fit the model\'s schema: %s' % '; '.join(errors)
    return sent, report, None


def inputs_of(base_url, timeout=FETCH_TIMEOUT, validate_certs=True):
    """``(described inputs or None, note or None)`` for cog_models_info."""
    schema, note = fetch(base_url, timeout=min(timeout, FETCH_TIMEOUT), validate_certs=validate_certs)
    if schema is None:
        return None, note
    return describe(input_fields(schema)), None
