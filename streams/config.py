"""Every facestream setting in one place: its env var, its default, its meaning, what it takes.

Settings are read from ``FACESTREAM_*`` environment variables once, into an
immutable :class:`Settings`. Each setting declares what it takes (its type, a
few allowed values, a smallest number) and a :class:`Settings` holding anything
else cannot be made, from the environment or in code: a typo stops a command at
start with one line naming the variable and what it takes, not at the first
event. The README's configuration table is checked against this module by a
test, so a setting cannot exist undocumented.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadSetting

PREFIX = "FACESTREAM_"
MIB = 1024 * 1024
KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}  # what each type reads as


def _setting(
    default: Any, help: str, *, secret: bool = False, choices: tuple[str, ...] = (), minimum: int = 0
) -> Any:
    """One setting; ``choices``: the values it takes (any case, kept as spelled here); a number is at least ``minimum``."""
    return field(
        default=default,
        repr=not secret,
        metadata={"help": help, "secret": secret, "choices": choices, "minimum": minimum},
    )


@dataclass(frozen=True)
class Settings:
    """Runtime configuration; field ``x`` is read from ``FACESTREAM_X``."""

    # --- Kafka -----------------------------------------------------------
    kafka_bootstrap_servers: str = _setting("127.0.0.1:9092", "Kafka bootstrap servers, comma separated.")
    app_id: str = _setting("facestream", "faust app id; also the consumer group of the workers.")
    topic_prefix: str = _setting("face.", "Prefix of every topic: <prefix>images, <prefix>embeddings, ...")
    topic_partitions: int = _setting(4, "Partitions of the topics the app declares.", minimum=1)
    topic_replication: int = _setting(1, "Replication factor of the topics the app declares.", minimum=1)
    max_message_bytes: int = _setting(
        16 * MIB,
        "One size limit for a Kafka record everywhere: topic max.message.bytes, "
        "producer max.request.size, consumer fetch limits. Image payloads get this minus an envelope.",
        minimum=1,
    )
    processing_guarantee: str = _setting(
        "at_least_once",
        "Delivery guarantee; exactly_once means transactions and read_committed consumers.",
        choices=("at_least_once", "exactly_once"),
    )
    schema_registry_url: str = _setting(
        "", "Confluent Schema Registry URL; empty means Avro single-object encoding without a registry."
    )
    schema_registry_subject_strategy: str = _setting(
        "topic_name",
        "Subject a schema is registered under: topic_name (<topic>-value), record_name (the record's full name) "
        "or topic_record_name (<topic>-<full name>), as Confluent's serializers name them.",
        choices=("topic_name", "record_name", "topic_record_name"),
    )
    schema_registry_auto_register: bool = _setting(
        True,
        "Register the schemas this process writes; false only looks them up, for registries where a "
        "deployment pipeline registers schemas and clients may not.",
    )
    schema_registry_username: str = _setting("", "Schema Registry basic-auth user name.")
    schema_registry_password: str = _setting("", "Schema Registry basic-auth password (never logged).", secret=True)
    schema_registry_ssl_cafile: str = _setting("", "PEM file of the CA that signed the registry's certificate.")
    schema_registry_ssl_certfile: str = _setting("", "PEM client certificate for mutual TLS with the registry.")
    schema_registry_ssl_keyfile: str = _setting("", "PEM private key of the registry client certificate.")
    schema_registry_timeout_s: float = _setting(
        5.0, "Longest wait for one Schema Registry request; a registry that does not answer is retried with backoff."
    )
    kafka_security_protocol: str = _setting(
        "PLAINTEXT", "How clients reach the brokers.", choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    )
    kafka_sasl_mechanism: str = _setting(
        "SCRAM-SHA-512",
        "SASL mechanism when a SASL protocol is used.",
        choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),  # user and password: what streams.kafka.config passes on
    )
    kafka_sasl_username: str = _setting("", "SASL user name.")
    kafka_sasl_password: str = _setting("", "SASL password (never logged).", secret=True)
    kafka_ssl_cafile: str = _setting("", "PEM file of the CA that signed the brokers' certificates.")
    kafka_ssl_certfile: str = _setting("", "PEM client certificate for mutual TLS.")
    kafka_ssl_keyfile: str = _setting("", "PEM private key of the client certificate.")
    group_instance_id: str = _setting(
        "",
        "Static group membership (group.instance.id): a worker restarted with the same id gets its partitions "
        "back at once instead of after the session timeout. Unique per worker; empty means dynamic membership.",
    )
    session_timeout_s: float = _setting(
        30.0, "Consumer group session timeout: how long a silent worker keeps its partitions."
    )

    # --- batching --------------------------------------------------------
    max_batch: int = _setting(16, "Most image events handed to the models at once.", minimum=1)
    max_wait_ms: int = _setting(50, "Longest wait for a batch to fill once it holds one event.")
    decode_threads: int = _setting(4, "Threads decoding and validating images.", minimum=1)
    agent_concurrency: int = _setting(
        3,
        "Batches in flight per worker (at-least-once): while one runs the models, others decode or wait for "
        "Kafka to acknowledge.",
        minimum=1,
    )

    # --- bounds on what a record may ask for -------------------------------
    max_id_bytes: int = _setting(
        1024,
        "Longest record key or id (image, gallery, subject, query, candidate) in UTF-8 bytes; longer is BAD_EVENT.",
        minimum=1,
    )
    max_attributes_bytes: int = _setting(
        64 * 1024, "Largest total size of an ImageEvent's attributes (keys and values, UTF-8); larger is BAD_EVENT."
    )
    dead_letter_prefix_bytes: int = _setting(
        64 * 1024,
        "When a failed record does not fit a dead letter whole, the dead letter keeps this many of its first bytes "
        "plus the original length and SHA-256.",
    )
    max_candidates: int = _setting(
        10_000,
        "Most inline candidates one RerankQuery may carry (BAD_QUERY beyond); also the most items of any array or "
        "map a worker decodes (at least 4096), refused before decoding.",
        minimum=1,
    )
    max_query_work: float = _setting(
        2e10, "Most multiply-adds one query may ask of the re-ranker (k-reciprocal costs rows^2 x dim); more is BAD_QUERY."
    )
    max_gallery_labels: int = _setting(
        100,
        "Galleries with their own facestream_gallery_size series; the others are summed under gallery=\"_other\".",
    )
    gallery_batch: int = _setting(
        1024,
        "Most gallery entries applied at once: one commit (one transaction under exactly-once) per batch, "
        "within FACESTREAM_MAX_WAIT_MS.",
        minimum=1,
    )
    gallery_dtype: str = _setting(
        "float32",
        "How gallery rows are stored: float16 halves and int8 quarters their memory and the bytes a query scans; "
        "scores are exact cosines of the stored rows (float16 within about 1e-4 of float32, int8 about 2e-3).",
        choices=("float32", "float16", "int8"),
    )
    gallery_index_min: int = _setting(
        50_000,
        "Gallery size from which a gallery also keeps an approximate (HNSW) index, built in the background: once "
        "it is ready, cosine queries re-score its candidates exactly instead of scanning every row (from about "
        "this size the scan is slower than the index). Dropped below half this size; 0 never builds one. Saved under "
        "FACESTREAM_DATA_DIR before a rebuild and at stop, and taken up again after a restart.",
    )
    gallery_index_ef: int = _setting(
        128,
        "Candidates a gallery index query looks for and re-scores exactly (HNSW's ef): more is slower and finds "
        "more of the true top k (recall@10 >= 0.99 at a million rows at 128).",
        minimum=1,
    )

    # --- images ----------------------------------------------------------
    uri_roots: str = _setting(
        "",
        "Directories (os.pathsep separated) claim-check file:// URIs may read from; empty turns claim-check reads off.",
    )
    max_pixels_in_flight: int = _setting(
        80_000_000,
        "Most decoded pixels held by the embed agent at once; a batch of huge images waits instead.",
        minimum=1,
    )
    max_image_pixels: int = _setting(
        40_000_000, "Largest width*height accepted, read from the header before decoding.", minimum=1
    )
    min_image_side: int = _setting(16, "Smallest accepted width or height in pixels.", minimum=1)
    canvas_size: int = _setting(
        640, "Longest side of the canvas the detector sees (larger images are shrunk to fit).", minimum=1
    )
    canvas_fit: str = _setting(
        "auto",
        "Detector canvas: image (each image's own shape, stride-rounded: a CPU pays for every pixel), "
        "square (canvas_size x canvas_size: one shape, so a GPU server batches any images), "
        "auto (square for triton, image for onnx).",
        choices=("auto", "image", "square"),
    )

    # --- faces -----------------------------------------------------------
    score_threshold: float = _setting(0.6, "Lowest detector score kept as a face.")
    nms_threshold: float = _setting(0.3, "IoU above which overlapping detections are merged.")
    min_face_size: int = _setting(20, "Smallest face (shorter box side, original pixels) kept.")
    max_faces: int = _setting(32, "Most faces kept per image (highest scores first).", minimum=1)
    emit_aligned: bool = _setting(False, "Attach each aligned 112x112 face as JPEG to the output record.")

    # --- inference -------------------------------------------------------
    backend: str = _setting(
        "onnx", "Inference backend: onnx runs ONNX Runtime in-process, triton asks a Triton server.",
        choices=("onnx", "triton"),
    )
    model_dir: str = _setting(".cache/models", "Where the pretrained upstream models and their licence texts are cached.")
    model_repository: str = _setting(
        "triton-infer-custom/model_repository",
        "Triton-layout model repository holding the generated serving variants; the onnx backend reads them here too.",
    )
    detector_format: str = _setting("yunet", "Layout of the detector outputs.", choices=("yunet", "scrfd"))
    detector_model: str = _setting("face_detector", "Detector model name (Triton repository name).")
    embedder_model: str = _setting("face_embedder", "Embedder model name (Triton repository name).")
    onnx_precision: str = _setting(
        "int8",
        "Embedder the onnx backend runs: int8 (quantised, calibrated on real faces, cosine >= 0.99 to float32; "
        "written by `facestream models fetch`) or float32 (the file Triton serves).",
        choices=("int8", "float32"),
    )
    onnx_threads: int = _setting(
        0, "Single-threaded ONNX Runtime runs computing at once (the onnx backend's cores); 0 means one per core."
    )
    triton_url: str = _setting("127.0.0.1:8001", "Triton gRPC endpoint.")
    triton_timeout_s: float = _setting(10.0, "Per-request timeout of Triton calls.")
    backend_retries: int = _setting(
        3,
        "Retries of one Triton call on transient gRPC errors; after that the worker backs off and "
        "retries the batch until the backend answers (good images are never dead-lettered for an outage).",
    )
    retry_backoff_ms: int = _setting(200, "First retry delay; doubles on each retry.")

    # --- re-ranking ------------------------------------------------------
    rerank_threads: int = _setting(0, "Threads of the C++ re-ranker; 0 means one per core.")
    rerank_graph_k1: int = _setting(
        20,
        "Largest k1 a gallery's neighbour graph serves: k-reciprocal queries with k1 up to it (and k2 up to it + 1) "
        "cost O(rows x dim) after the graph's one-off build on a gallery's first such query; a larger k1 takes "
        "the dense O(rows^2 x dim) path, within FACESTREAM_MAX_QUERY_WORK.",
        minimum=1,
    )
    rerank_graph_max_rows: int = _setting(
        250_000,
        "Largest gallery whose neighbour graph a k-reciprocal query may have built: the build is O(rows^2 x dim) "
        "in the background (about 90 s at 100,000 rows on two cores, six times that at this size); a query to a "
        "larger gallery without a graph is BAD_QUERY.",
        minimum=1,
    )

    # --- decisions -------------------------------------------------------
    enrol_min_quality: float = _setting(
        0.5,
        "Lowest face quality (0-1) enrolled: facestream enroll refuses poorer faces and a GalleryEntry below it "
        "is dead-lettered LOW_QUALITY.",
    )
    match_min_quality: float = _setting(
        0.2, "Lowest face quality (0-1) a query may have; a poorer query face is dead-lettered LOW_QUALITY."
    )
    ambiguity_margin: float = _setting(
        0.05,
        "A decision is AMBIGUOUS, not MATCH, when a second subject above the match threshold scores within "
        "this much of the best.",
    )

    # --- operations ------------------------------------------------------
    web_port: int = _setting(6066, "Port of the worker's web server: /metrics, /healthz, /readyz.")
    web_host: str = _setting("127.0.0.1", "Address the worker's web server binds (the image and compose file set 0.0.0.0).")
    lag_interval_s: float = _setting(5.0, "How often consumer lag is refreshed.")
    broker_stale_s: float = _setting(
        30.0, "/readyz fails when no broker has answered the lag monitor for this long."
    )
    stall_timeout_s: float = _setting(
        60.0, "/readyz fails when an agent's partitions have lag and it answered no event for this long."
    )
    shutdown_grace_s: float = _setting(
        8.0, "After SIGTERM the worker exits within this long, whatever it is doing; only answered events are committed."
    )
    log_level: str = _setting("INFO", "Log level.")
    log_format: str = _setting("plain", "Format of the log lines.", choices=("plain", "json"))
    data_dir: str = _setting(
        ".cache/worker",
        "faust data directory (table state), and the gallery rows and indexes saved at stop, per worker.",
    )

    # --- HTTP API (facestream api) ------------------------------------------
    api_host: str = _setting("127.0.0.1", "Address the HTTP API binds (the compose file sets 0.0.0.0).")
    api_port: int = _setting(8080, "Port of the HTTP API (facestream api).", minimum=1)
    api_keys: str = _setting(
        "",
        "Comma-separated API keys; when set every /v1 route needs one in the X-API-Key header (401 otherwise). "
        "Never logged.",
        secret=True,
    )
    api_max_request_bytes: int = _setting(
        32 * MIB, "Largest HTTP request body; larger is 413, refused before the body is read.", minimum=1
    )
    api_max_images: int = _setting(16, "Most images one HTTP request may carry.", minimum=1)
    api_max_requests: int = _setting(
        64, "Most /v1 requests served at once; more are answered 503 with Retry-After.", minimum=1
    )
    api_max_queued_images: int = _setting(
        128, "Most images waiting for the models across requests; a request that does not fit is 503.", minimum=1
    )
    api_timeout_s: float = _setting(
        30.0, "Longest time one HTTP request may take, a gallery query's answer included; then 504."
    )

    def __post_init__(self) -> None:
        """Refuse a value a setting does not take, however these settings were made."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            reason = _refusal(f, value)
            if reason:
                raise BadSetting(f"{f.name}={value!r} {reason} ({env_name(f.name)})")
            if f.metadata["choices"]:
                object.__setattr__(self, f.name, _spelling(f, value))  # frozen, so set once here

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read every field from ``FACESTREAM_<FIELD>``; ``overrides`` win over the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(env_name(f.name))
            if raw is not None:
                values[f.name] = _read(f, raw)
        values.update(overrides)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The ``FACESTREAM_*`` variables that :meth:`from_env` reads back as these settings.

        Secrets included: for the environment of a process run with these settings, never for a log.
        """
        return {env_name(f.name): _spelled(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def max_image_bytes(self) -> int:
        """Image payload limit: the record limit less room for the Avro envelope and headers."""
        return self.max_message_bytes - 64 * 1024

    @property
    def model_path(self) -> Path:
        return Path(self.model_dir).expanduser()

    def topic(self, name: str) -> str:
        """Full topic name of ``images``, ``embeddings``, ``dlq``, ``gallery``, ``queries``, ``rerank-results``."""
        return f"{self.topic_prefix}{name}"

    def redacted(self) -> dict[str, Any]:
        """All settings, secrets masked: safe for logs and error messages."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.metadata.get("secret") and value else value
        return out


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def documented() -> list[tuple[str, Any, str]]:
    """(env var, default, help) of every setting, in declaration order; the help names the choices."""
    out = []
    for f in dataclasses.fields(Settings):
        choices = f.metadata["choices"]
        help_text = f.metadata["help"] + (f" One of {', '.join(choices)}." if choices else "")
        out.append((env_name(f.name), f.default, help_text))
    return out


def _refusal(f: dataclasses.Field, value: Any) -> str | None:
    """Why setting ``f`` does not take ``value``; None when it does."""
    kind = type(f.default)
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, (int, float) if kind is float else kind):
        return f"is not {KINDS[kind]}"
    if f.metadata["choices"] and _spelling(f, value) is None:
        return f"is not one of {', '.join(f.metadata['choices'])}"
    if kind in (int, float) and value < f.metadata["minimum"]:
        return f"must be at least {f.metadata['minimum']}"
    return None


def _spelling(f: dataclasses.Field, value: str) -> str | None:
    """The choice of setting ``f`` that ``value`` names, as declared (choices are matched ignoring case)."""
    return next((choice for choice in f.metadata["choices"] if choice.lower() == value.lower()), None)


def _read(f: dataclasses.Field, raw: str) -> Any:
    """The value of setting ``f`` that its variable spells ``raw``; a refusal names the variable."""
    kind = type(f.default)
    try:
        value = _parse(raw, kind)
    except ValueError:
        raise BadSetting(f"{env_name(f.name)}={raw!r} is not {KINDS[kind]}") from None
    reason = _refusal(f, value)
    if reason:
        raise BadSetting(f"{env_name(f.name)}={raw!r} {reason}")
    return value


def _parse(raw: str, kind: type) -> Any:
    if kind is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ValueError(raw)
    return kind(raw)


def _spelled(value: Any) -> str:
    """``value`` as a variable spells it, so that :func:`_parse` reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
