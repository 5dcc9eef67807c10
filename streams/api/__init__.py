"""The synchronous HTTP API (``facestream api``): the stream's pipeline, re-ranker and galleries behind HTTP.

Where things live:

* ``app``        builds the ASGI app from :class:`~streams.config.Settings`: its services, middleware, routes
* ``services``   what the routes share: the worker context, the micro-batcher, the pixel budget, the Kafka link
* ``batcher``    one micro-batcher in front of :meth:`FacePipeline.process`: concurrent requests share model calls
* ``images``     images out of a request (multipart parts or base64), decoded within the pixel budget, batched
* ``gallery_link`` galleries through their owner, Kafka: gallery queries as request/reply over the queries and
  results topics, enrolment as ``GalleryEntry`` records, a gallery's facts read from the workers' changelog
* ``inline``     an inline ``RerankQuery`` ranked in-process by the rerank agent's own :class:`QueryRanker`
* ``records``    responses as the stream's records (``FaceEmbeddings``, ``RerankResult``), their JSON Schemas
  derived from ``schemas/*.avsc``, so the HTTP answer and the topic record cannot drift apart
* ``requests``   the request bodies, bounded by the settings
* ``problems``   whole-request errors as ``{code, message}`` with their HTTP status
* ``protection`` body-size limit (413 before reading), requests in flight (503), per-request timeout (504)
* ``keys``       optional API keys (``X-API-Key``), compared in constant time
* ``http_metrics`` requests by route and status, latency, in flight
* ``docs``       ``/docs`` from the Swagger UI files of the ``swagger-ui-py`` package: no CDN
* ``routes/``    one module per group of routes
"""
