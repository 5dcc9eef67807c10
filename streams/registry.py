"""The Confluent Schema Registry as facestream uses it: full schemas under Confluent's subject names, ids cached.

What is registered (or looked up) is each schema exactly as ``schemas/*.avsc``
writes it, docs, defaults and logical types included: the registry's
compatibility check needs the defaults, Confluent consumers read
``timestamp-millis`` as timestamps only when the logical type is there, and a
producer using Confluent's own serializer from the same ``.avsc`` then finds the
same version instead of adding a second one.

A registry call fails in one of two ways that must never be confused. The
registry answered that no such schema exists: a record framed with that id can
never be read, so it is undecodable (a dead letter). Or it did not answer (down,
slow, 5xx, refusing our credentials): :class:`RegistryUnavailable`, which the
worker waits out with backoff, as it waits out a backend outage, so a registry
restart loses and dead-letters nothing.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from .config import Settings
from .errors import FacestreamError, UndecodableRecord
from .kafka.config import tls_locations

#: Confluent's subject name strategies, by setting value: (topic, record full name) -> subject.
SUBJECT_STRATEGIES: Mapping[str, Callable[[str, str], str]] = {
    "topic_name": lambda topic, record: f"{topic}-value",
    "record_name": lambda topic, record: record,
    "topic_record_name": lambda topic, record: f"{topic}-{record}",
}
#: How many ids the registry said it does not know are remembered, so a stream of made-up ids costs one
#: registry request per distinct id, and that memory stays bounded.
MAX_UNKNOWN_IDS = 1024
NOT_FOUND = 404


class RegistryUnavailable(FacestreamError):
    """The registry did not give an answer we can act on (down, timing out, 5xx, 401): retry, lose nothing."""


def full_name(schema: Mapping[str, Any]) -> str:
    name = schema["name"]
    return name if "." in name or not schema.get("namespace") else f"{schema['namespace']}.{name}"


def client_config(settings: Settings) -> dict[str, Any]:
    """The confluent-kafka client configuration: one try per call (the caller's backoff does the retrying)."""
    config: dict[str, Any] = {"url": settings.schema_registry_url, "timeout": settings.schema_registry_timeout_s,
                              "max.retries": 0}
    if settings.schema_registry_username or settings.schema_registry_password:
        config["basic.auth.user.info"] = f"{settings.schema_registry_username}:{settings.schema_registry_password}"
    config.update(tls_locations(settings.schema_registry_ssl_cafile, settings.schema_registry_ssl_certfile,
                                settings.schema_registry_ssl_keyfile))
    return config


class SchemaRegistry:
    """Schema ids by (schema, topic), and writer schemas by id (each fetched once per process)."""

    def __init__(self, client: Any, *, strategy: str = "topic_name", auto_register: bool = True) -> None:
        self._client = client
        self._subject = SUBJECT_STRATEGIES[strategy]
        self._auto_register = auto_register
        self._schemas: dict[int, dict[str, Any]] = {}
        self._unknown: OrderedDict[int, str] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> SchemaRegistry:
        return cls(
            SchemaRegistryClient(client_config(settings)),
            strategy=settings.schema_registry_subject_strategy,
            auto_register=settings.schema_registry_auto_register,
        )

    def subject(self, schema: Mapping[str, Any], topic: str) -> str:
        return self._subject(topic, full_name(schema))

    def id_of(self, schema: Mapping[str, Any], topic: str) -> int:
        """The id of ``schema`` (as written) under its subject for ``topic``, registered or only looked up.

        Asks the registry on every call: the codec keeps the id of each schema it writes, per topic.
        """
        subject = self.subject(schema, topic)
        wanted = Schema(json.dumps(schema), "AVRO")
        try:
            if self._auto_register:
                return self._client.register_schema(subject, wanted)
            return self._client.lookup_schema(subject, wanted).schema_id
        except Exception as exc:  # noqa: BLE001 -- whatever went wrong, this process cannot write yet
            action = "register" if self._auto_register else "find"
            raise RegistryUnavailable(f"cannot {action} {full_name(schema)} under subject {subject!r}: "
                                      f"{_reason(exc)}") from None

    def knows(self, schema_id: int) -> bool:
        """Whether ``schema_id`` needs no registry request: its schema is held, or it is known not to exist."""
        return schema_id in self._schemas or schema_id in self._unknown

    def schema_of(self, schema_id: int) -> dict[str, Any]:
        """The writer schema of ``schema_id`` as registered; UndecodableRecord when the registry has no such id."""
        if schema_id in self._schemas:
            return self._schemas[schema_id]
        if schema_id in self._unknown:
            raise UndecodableRecord(self._unknown[schema_id])
        try:
            text = self._client.get_schema(schema_id).schema_str
        except SchemaRegistryError as exc:
            if exc.http_status_code != NOT_FOUND:
                raise RegistryUnavailable(f"cannot read schema id {schema_id}: {_reason(exc)}") from None
            self._forget_unknown_beyond_limit()
            self._unknown[schema_id] = f"schema id {schema_id} is not in the registry"
            raise UndecodableRecord(self._unknown[schema_id]) from None
        except Exception as exc:  # noqa: BLE001 -- no answer: the id may well exist, so nothing is refused
            raise RegistryUnavailable(f"cannot read schema id {schema_id}: {_reason(exc)}") from None
        try:
            schema = json.loads(text)
        except ValueError:
            raise UndecodableRecord(f"schema id {schema_id} is not an Avro schema") from None
        self._schemas[schema_id] = schema
        return schema

    def check(self) -> str:
        """One cheap authenticated request (the global compatibility level); RegistryUnavailable when it fails."""
        try:
            return f"registry answered (compatibility {self._client.get_compatibility()})"
        except Exception as exc:  # noqa: BLE001 -- any failure means the registry cannot serve us now
            raise RegistryUnavailable(_reason(exc)) from None

    def _forget_unknown_beyond_limit(self) -> None:
        while len(self._unknown) >= MAX_UNKNOWN_IDS:
            self._unknown.popitem(last=False)


def _reason(exc: Exception) -> str:
    """A short reason without the URL's credentials: the client's messages never carry them, ours neither."""
    if isinstance(exc, SchemaRegistryError):
        return f"HTTP {exc.http_status_code} (error {exc.error_code}): {exc.error_message}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]
