"""facestream: face embeddings and re-ranking as a Kafka stream processor.

Where to start reading:

* :mod:`streams.app` builds a worker: a faust app with the agents, the web
  pages and the services of :mod:`streams.context`.
* :mod:`streams.agents` holds the agents. ``embed`` turns ``ImageEvent``s into
  ``FaceEmbeddings``; ``rerank`` answers ``RerankQuery``s from the galleries
  ``gallery_keeper`` keeps, a batch of ``GalleryEntry``s at a time.
  ``outputs`` is the promise every agent keeps: exactly one output per input,
  and no offset is committed before its output is acknowledged.
* :mod:`streams.pipeline` is the face pipeline: detection -> five-point
  alignment -> embedding, on a :mod:`streams.inference` backend (ONNX Runtime
  in-process, or Triton), with the image work in :mod:`streams.vision` and the
  model facts in :mod:`streams.models`.
* :mod:`streams.ranking` holds the ranking methods, over the C++ re-ranker
  bound in :mod:`streams.rerank`; :mod:`streams.gallery` keeps galleries as
  matrices (rows in :mod:`streams.rows`, a neighbour graph in
  :mod:`streams.neighbour_graph`, an approximate index in :mod:`streams.ann_index`); :mod:`streams.identity` turns a ranked list into an answer (per-subject
  scores, MATCH / UNKNOWN / AMBIGUOUS, one identity per face, calibration), and
  :mod:`streams.vision.quality` says how fit a face is for it.
* :mod:`streams.kafka` is all Kafka plumbing: client settings, credentials,
  topics, lag, safe commits, one producer and one read loop, and the bulk
  changelog read a gallery table recovers from.
* The contract: :mod:`streams.codecs` (Avro frames, with the strict walk of
  :mod:`streams.avro_walk` and the bulk reader :mod:`streams.avro_arrays`), ``schemas/*.avsc``, :mod:`streams.errors` (the
  dead-letter codes) and :mod:`streams.bounds` (what a record may hold);
  :mod:`streams.registry` is the Schema Registry as the codec uses it, and
  :mod:`streams.asyncapi` writes the whole topic contract (``docs/asyncapi.yaml``).
* :mod:`streams.api` is the synchronous HTTP API (``facestream api``) over the same
  pipeline, re-ranker and galleries: one micro-batcher shares model calls across requests,
  and galleries are reached through their owner, Kafka.
* :mod:`streams.config` is every setting; :mod:`streams.cli` every command.
"""

__version__ = "0.1.0"
