"""The faust app of a facestream worker: Kafka settings, topics, agents, web pages.

:func:`create_app` builds a fully wired app from :class:`Settings`, so a worker,
a test and a benchmark can each run one with their own settings.
"""

from __future__ import annotations

from pathlib import Path

import faust

from .agents.embed import register_embed_agent
from .agents.rerank import register_rerank_agents
from .config import Settings
from .context import WorkerContext
from .kafka.commits import AnsweredOffsetsTransport
from .kafka.config import faust_broker_url, faust_credentials
from .kafka.lag import install_lag_monitor
from .readiness import Readiness
from .web import install_web


def create_app(settings: Settings) -> faust.App:
    """A faust app with every facestream agent registered, and the services they need started and stopped with it."""
    app = faust.App(
        settings.app_id,
        broker=faust_broker_url(settings),
        broker_credentials=faust_credentials(settings),
        processing_guarantee=settings.processing_guarantee,
        store="memory://",
        datadir=Path(settings.data_dir),
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        consumer_group_instance_id=settings.group_instance_id or None,
        broker_session_timeout=settings.session_timeout_s,
        consumer_max_fetch_size=settings.max_message_bytes,
        producer_max_request_size=settings.max_message_bytes,
        producer_acks=-1,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=max(4 * settings.max_batch, 64),
        web_enabled=True,
        web_router_enabled=False,  # faust's /router/ and /table/ pages: topology and table data, unauthenticated
        web_tables_enabled=False,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_host=settings.web_host,
    )
    app.transport = AnsweredOffsetsTransport(app.conf.broker_consumer, app)  # before any topic is declared
    ctx = WorkerContext.from_settings(settings)
    app.service(ctx)  # loads the models at start-up, closes the backend at stop
    register_embed_agent(app, ctx)
    register_rerank_agents(app, ctx)
    lag = install_lag_monitor(app, settings, [ctx.topics.images, ctx.topics.queries])
    readiness = Readiness(app, settings, lag, ctx.progress, ctx.pipeline.backend,
                          registry=ctx.codec.registry, schemas_pending=ctx.schemas_pending)
    install_web(app, readiness)
    return app
