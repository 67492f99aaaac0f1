"""JSON Schemas that users give the platform, and validating against them safely.

Users give the platform JSON Schemas (draft 2020-12): a job's ``parameters`` (job-api, the scheduler)
and the schema of a registered event type (event-gateway). A schema is validated long after it was
accepted, by other services and on every run or event, so it is checked once, here, before it is
stored (:func:`check_usable`). A schema is **accepted** when:

1. it nests at most :data:`MAX_DEPTH` (32) levels of JSON objects and arrays (the schema itself is
   level 1): validators, defaults and messages walk it recursively, and every consumer must be able to;
2. it is a valid JSON Schema 2020-12 (its meta-schema);
3. every ``$ref``/``$dynamicRef`` resolves without fetching anything: to a subschema of the schema
   itself (``#/$defs/...``, an ``$anchor``, an embedded ``$id``) or, where the caller allows it (the
   event-gateway), to one of the platform's schemas (``urn:automation:schema:...``). A remote URL is
   refused, and so is a pointer to something that is not a subschema (inside ``default``, say);
4. validation cannot recurse without consuming input: following references and the keywords that
   apply a subschema to the *same* value (``allOf``, ``anyOf``, ``oneOf``, ``not``, ``if``,
   ``then``, ``else``, ``dependentSchemas``, ``$ref``, ``$dynamicRef``) never leads back to where it
   started (a reference cycle is allowed only through a keyword that steps into a property or an
   item, so it ends with the value's own depth), such a chain is at most :data:`MAX_DEPTH` long,
   and at most :data:`MAX_IN_PLACE` (1000) schemas apply to one value, each counted as often as it is
   reached (levels of ``allOf`` with many references each would otherwise multiply the work);
5. ``$dynamicAnchor`` is not used (which schema a dynamic reference reaches would depend on the
   path taken, so rule 4 could not be checked; ``$dynamicRef`` without it is a plain ``$ref``);
6. every ``pattern``, every ``patternProperties`` name is an RE2 regular expression: patterns are
   matched by RE2 (linear time, no catastrophic backtracking). RE2 has no backreferences and no
   lookaround; a pattern using them is refused.

Validation (:class:`CompiledSchema`) never fetches a URL: references resolve only in a
``referencing.Registry`` without retrieval. Patterns (``pattern``, ``patternProperties``, and the
property names ``additionalProperties``/``unevaluatedProperties`` consult) are matched by RE2, and
the ``regex`` format means an RE2 expression. A schema stored before these rules (or not checked by
the platform at all) that still cannot be used makes :meth:`CompiledSchema.first_error` raise
:class:`UnusableSchema` naming the place at fault, never anything else.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]
from jsonschema import Draft202012Validator, FormatChecker, _keywords, _utils, validators
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from automation_contracts.errors import ContractError, join_path

MAX_DEPTH = 32
"""The deepest a schema may nest (JSON objects and arrays), and the longest in-place evaluation chain."""

LOCAL_BASE = "urn:automation:local-schema"
"""The base URI of a schema without an ``$id``: references resolve against it, never on a network."""

IN_PLACE_SINGLE = ("not", "if", "then", "else")
IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
IN_PLACE_MAPS = ("dependentSchemas",)
"""Keywords whose subschemas apply to the same value as the schema they are in."""
CHILD_SINGLE = (
    "items",
    "contains",
    "additionalProperties",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
CHILD_LISTS = ("prefixItems",)
CHILD_MAPS = ("properties", "patternProperties", "$defs", "definitions")
"""Keywords whose subschemas apply to a property, an item or a name (or are only referenced: ``$defs``)."""
REFERENCES = ("$ref", "$dynamicRef")


class UnusableSchema(ContractError):
    """A schema the platform cannot use; ``path`` names the place in the schema (or the value) at fault."""


class UnsupportedPattern(ValueError):
    """A regular expression RE2 cannot compile (backreferences, lookaround, ...)."""


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2; :class:`UnsupportedPattern` when RE2 cannot compile it."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UnsupportedPattern(
            f"{pattern!r} is not an RE2 regular expression ({detail}); patterns are matched in linear time "
            "by RE2, which has no backreferences and no lookaround"
        ) from exc


def pattern_search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` (RE2) matches somewhere in ``text``; linear in the length of ``text``."""
    return compile_pattern(pattern).search(text) is not None


class _Re2Module:
    """The part of the ``re`` module jsonschema's pattern keywords call, matched by RE2."""

    @staticmethod
    def search(pattern: str, text: str) -> Any:
        return compile_pattern(pattern).search(text)


def _rebound(function: Any, namespace: dict[str, Any]) -> Any:
    """``function`` with ``namespace`` as its globals (its ``re`` and helpers replaced)."""
    rebound = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__, function.__closure__
    )
    rebound.__kwdefaults__ = function.__kwdefaults__
    return rebound


def _linear_time_keywords() -> dict[str, Any]:
    """jsonschema's own keywords that match patterns, with ``re.search`` replaced by RE2.

    ``pattern`` and ``patternProperties`` match directly; ``additionalProperties`` and
    ``unevaluatedProperties`` through ``find_additional_properties`` and
    ``find_evaluated_property_keys_by_schema``. Their code is jsonschema's, unchanged: only the
    module-level names they look up (``re`` and those two helpers) are swapped.
    """
    helpers = ("find_additional_properties", "find_evaluated_property_keys_by_schema")
    utils_namespace = {**vars(_utils), "re": _Re2Module}
    for name in helpers:
        utils_namespace[name] = _rebound(getattr(_utils, name), utils_namespace)
    keywords_namespace = {**vars(_keywords), "re": _Re2Module}
    keywords_namespace.update({name: utils_namespace[name] for name in helpers})
    names = ("pattern", "patternProperties", "additionalProperties", "unevaluatedProperties")
    return {name: _rebound(Draft202012Validator.VALIDATORS[name], keywords_namespace) for name in names}


def _is_re2_regex(instance: object) -> bool:
    if isinstance(instance, str):
        compile_pattern(instance)
    return True


FORMAT_CHECKER = FormatChecker()
"""Draft 2020-12's format checker, but ``regex`` means an expression RE2 compiles."""
FORMAT_CHECKER.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
FORMAT_CHECKER.checks("regex", raises=UnsupportedPattern)(_is_re2_regex)

Validator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, _linear_time_keywords(), format_checker=FORMAT_CHECKER
)
"""Draft 2020-12 validation with patterns matched by RE2; always given a registry (never fetches)."""


def _registry_with(schema: Any, registry: Registry[Any] | None, base_uri: str) -> tuple[Registry[Any], Resource[Any]]:
    # Not crawled here: a registry crawls lazily on a lookup that needs it (an anchor, an embedded
    # $id), so a malformed stored schema fails inside validation, where it is reported, not before.
    resource: Resource[Any] = Resource.from_contents(schema, default_specification=DRAFT202012)
    return (registry if registry is not None else Registry()).with_resource(base_uri, resource), resource


# -- checking -------------------------------------------------------------------------------------


def _check_depth(schema: Any, prefix: str) -> set[int]:
    """Refuse a document nested deeper than MAX_DEPTH; the ids of its objects."""
    objects: set[int] = set()
    stack: list[tuple[Any, int, list[str | int]]] = [(schema, 1, [])]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, Mapping):
            children: Iterator[tuple[str | int, Any]] = iter(value.items())
            objects.add(id(value))
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            continue
        if depth > MAX_DEPTH:
            raise UnusableSchema(
                f"the schema nests more than {MAX_DEPTH} levels of objects and arrays", join_path(prefix, path)
            )
        stack.extend((child, depth + 1, [*path, key]) for key, child in children)
    return objects


def _check_meta_schema(schema: Any, prefix: str) -> None:
    try:
        Draft202012Validator.check_schema(schema, format_checker=FORMAT_CHECKER)
    except SchemaError as exc:
        reason = exc.message
        path: list[str | int] = list(exc.absolute_path)
        if exc.validator == "format" and isinstance(exc.cause, UnsupportedPattern):
            reason = str(exc.cause)
        if "propertyNames" in exc.relative_schema_path and isinstance(exc.instance, str):
            path.append(exc.instance)  # a patternProperties name: name it
        raise UnusableSchema(f"not a valid JSON Schema: {reason}", join_path(prefix, path)) from exc


@dataclass(slots=True)
class _Position:
    """A subschema of the document: where it is, and the resolver that applies inside it."""

    schema: Any
    path: list[str | int]
    resolver: Any


_SUBSCHEMA_KEYWORDS: tuple[tuple[str, str, bool], ...] = (
    *((key, "single", True) for key in IN_PLACE_SINGLE),
    *((key, "list", True) for key in IN_PLACE_LISTS),
    *((key, "map", True) for key in IN_PLACE_MAPS),
    *((key, "single", False) for key in CHILD_SINGLE),
    *((key, "list", False) for key in CHILD_LISTS),
    *((key, "map", False) for key in CHILD_MAPS),
)
"""(keyword, shape of its value, whether its subschemas apply in place)."""


def _subschemas(schema: Mapping[str, Any]) -> Iterator[tuple[bool, list[str | int], Any]]:
    """(applies in place, path below ``schema``, subschema) for every subschema keyword of ``schema``."""
    for key, shape, in_place in _SUBSCHEMA_KEYWORDS:
        value = schema.get(key)
        if shape == "single" and key in schema:
            yield in_place, [key], value
        elif shape == "list" and isinstance(value, list):
            for index, sub in enumerate(value):
                yield in_place, [key, index], sub
        elif shape == "map" and isinstance(value, Mapping):
            for name, sub in value.items():
                yield in_place, [key, name], sub


def _positions(schema: Any, root_resolver: Any) -> dict[int, _Position]:
    """Every subschema of the document by id, as a validator reaches it (``$id`` changes the base)."""
    positions: dict[int, _Position] = {}
    stack: list[tuple[Any, list[str | int], Any]] = [(schema, [], root_resolver)]
    while stack:
        node, path, resolver = stack.pop()
        if not isinstance(node, Mapping) or id(node) in positions:
            continue
        resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
        positions[id(node)] = _Position(node, path, resolver)
        stack.extend((sub, [*path, *below], resolver) for _, below, sub in _subschemas(node))
    return positions


def _in_place_edges(
    positions: dict[int, _Position], objects: set[int], prefix: str, allowed: str
) -> dict[int, list[tuple[int, list[str | int]]]]:
    """For each subschema, the subschemas applying to the same value (and via which keyword path)."""
    edges: dict[int, list[tuple[int, list[str | int]]]] = {}
    for key, position in positions.items():
        node = position.schema
        if "$dynamicAnchor" in node:
            raise UnusableSchema(
                "$dynamicAnchor is not supported: use $anchor and $ref",
                join_path(prefix, [*position.path, "$dynamicAnchor"]),
            )
        targets: list[tuple[int, list[str | int]]] = []
        for keyword in REFERENCES:
            ref = node.get(keyword)
            if not isinstance(ref, str):
                continue
            where = [*position.path, keyword]
            try:
                target = position.resolver.lookup(ref).contents
            except Exception as exc:  # Unresolvable, or a pointer that walks off the document
                raise UnusableSchema(
                    f"cannot resolve {ref!r}: only {allowed} are allowed, and nothing is ever fetched",
                    join_path(prefix, where),
                ) from exc
            if not isinstance(target, Mapping | bool) or (
                isinstance(target, Mapping) and id(target) in objects and id(target) not in positions
            ):
                raise UnusableSchema(
                    f"{ref!r} does not point at a subschema (one under $defs, properties, items, allOf, ...)",
                    join_path(prefix, where),
                )
            if isinstance(target, Mapping) and id(target) in positions:
                targets.append((id(target), where))
        targets += [
            (id(sub), [*position.path, *below])
            for in_place, below, sub in _subschemas(node)
            if in_place and isinstance(sub, Mapping) and id(sub) in positions
        ]
        edges[key] = targets
    return edges


MAX_IN_PLACE = 1000
"""The most schemas that may apply to one value, counting each as often as references and in-place
keywords reach it: a few levels of ``allOf`` of many references to the next level stay within every other
limit, and multiply the work of validating each value."""


def _check_chains(
    positions: dict[int, _Position], edges: dict[int, list[tuple[int, list[str | int]]]], prefix: str
) -> None:
    """Refuse an in-place cycle, an in-place chain longer than MAX_DEPTH, or more than MAX_IN_PLACE
    schemas applying to one value (iteratively: no recursion)."""
    longest: dict[int, int] = {}
    fanout: dict[int, int] = {}  # how many schemas apply to a value this one applies to, itself included
    on_stack: set[int] = set()
    for start in positions:
        if start in longest:
            continue
        stack: list[tuple[int, list[str | int], Iterator[tuple[int, list[str | int]]]]] = [
            (start, [], iter(edges.get(start, ())))
        ]
        on_stack.add(start)
        while stack:
            node, _, pending = stack[-1]
            for target, via in pending:
                if target in on_stack:
                    vias = [frame[1] for frame in stack[[f[0] for f in stack].index(target) + 1 :]] + [via]
                    named = next((v for v in reversed(vias) if v and v[-1] in REFERENCES), via)
                    raise UnusableSchema(
                        "reference cycle: following it leads back to the same schema for the same value "
                        "without stepping into a property or an item, so validation would never end",
                        join_path(prefix, named),
                    )
                if target not in longest:
                    on_stack.add(target)
                    stack.append((target, via, iter(edges.get(target, ()))))
                    break
            else:
                stack.pop()
                on_stack.discard(node)
                longest[node] = 1 + max((longest[target] for target, _ in edges.get(node, ())), default=0)
                fanout[node] = 1 + sum(fanout[target] for target, _ in edges.get(node, ()))
                if fanout[node] > MAX_IN_PLACE:
                    raise UnusableSchema(
                        f"more than {MAX_IN_PLACE} schemas would apply to one value (through $ref, allOf, anyOf,"
                        " oneOf, not, if/then/else, each counted as often as it is reached): validating would"
                        " multiply the work",
                        join_path(prefix, positions[node].path),
                    )
                if longest[node] > MAX_DEPTH:
                    raise UnusableSchema(
                        f"more than {MAX_DEPTH} schemas apply to the same value one inside another "
                        "(through $ref, allOf, anyOf, oneOf, not, if/then/else)",
                        join_path(prefix, positions[node].path),
                    )


def check_usable(
    schema: Any, prefix: str = "", *, registry: Registry[Any] | None = None, base_uri: str = LOCAL_BASE
) -> None:
    """Raise :class:`UnusableSchema` naming ``<prefix>.<place>`` unless the platform accepts ``schema``.

    ``registry``: schemas that references may reach besides the schema itself (the platform's, for
    the event-gateway); none by default. The rules are the module's docstring.
    """
    if not isinstance(schema, Mapping | bool):
        raise UnusableSchema("a JSON Schema is an object or a boolean", prefix)
    objects = _check_depth(schema, prefix)
    _check_meta_schema(schema, prefix)
    if isinstance(schema, bool):
        return
    full, resource = _registry_with(schema, registry, base_uri)
    positions = _positions(schema, full.resolver_with_root(resource))
    allowed = "references inside the schema" + (" and to the platform's schemas" if registry is not None else "")
    _check_chains(positions, _in_place_edges(positions, objects, prefix, allowed), prefix)


# -- validating -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A schema ready to validate values: formats asserted, patterns by RE2, references never fetched."""

    schema: Any
    validator: Any
    registry: Registry[Any] | None
    base_uri: str

    def first_error(self, instance: Any, prefix: str = "") -> ValidationError | None:
        """The best-matching validation error of ``instance``, None when it is valid.

        A schema that fails to validate (unresolvable reference, reference cycle, a pattern RE2 cannot
        compile, recursion too deep) raises :class:`UnusableSchema`: naming the place in the schema
        (``<prefix>.<place>``) when :func:`check_usable` finds it, else ``prefix``.
        """
        try:
            error: ValidationError | None = best_match(self.validator.iter_errors(instance))
        except Exception as exc:  # validation is pure computation: any failure is the schema's
            check_usable(self.schema, prefix, registry=self.registry, base_uri=self.base_uri)
            reason = "the value could not be validated against the schema"
            if isinstance(exc, RecursionError):
                reason += ": it nests too deeply"
            elif isinstance(exc, UnsupportedPattern):
                reason += f": {exc}"
            raise UnusableSchema(reason, prefix) from exc
        return error

    def is_valid(self, instance: Any) -> bool:
        """Whether ``instance`` is valid (:class:`UnusableSchema` when the schema cannot be used)."""
        return self.first_error(instance) is None


def compile_schema(schema: Any, *, registry: Registry[Any] | None = None, base_uri: str = LOCAL_BASE) -> CompiledSchema:
    """A :class:`CompiledSchema` of ``schema``; references resolve in it and ``registry`` only."""
    full, _ = _registry_with(schema, registry, base_uri)
    validator = Validator(schema, registry=full, format_checker=FORMAT_CHECKER)
    return CompiledSchema(schema, validator, registry, base_uri)
