"""The faust app of a facestream worker: Kafka settings, topics, agents, web pages.

:func:`create_app` builds a fully wired app from :class:`Settings`, so a worker,
a test and a benchmark can each run one with their own settings.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust

from .agents.embed import register_embed_agent
from .agents.rerank import register_rerank_agents
from .backoff import backoff_delays
from .config import Settings
from .context import WorkerContext
from .kafka.commits import AnsweredOffsetsTransport
from .kafka.config import faust_broker_url, faust_credentials
from .kafka.lag import install_lag_monitor
from .readiness import Readiness
from .web import install_web


def create_app(settings: Settings) -> faust.App:
    """A faust app with every facestream agent registered; its ``facestream`` attribute holds the context."""
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
    app.facestream = ctx
    register_embed_agent(app, ctx)
    register_rerank_agents(app, ctx)
    lag = install_lag_monitor(app, settings, [ctx.topics.images, ctx.topics.queries])
    install_web(app, Readiness(app, settings, lag, ctx.progress, ctx.pipeline.backend))

    @app.task
    async def start_backend() -> None:
        # Load the models before the first batch arrives, and keep trying until they load: /readyz must
        # turn 200 once the backend serves, even while no event arrives to make the agent retry.
        for delay in backoff_delays(settings):
            try:
                await ctx.started_pipeline()
                return
            except Exception as exc:  # readiness reports it meanwhile
                app.log.warning("backend not ready at start-up, next try in %.1f s: %s", delay, exc)
                await asyncio.sleep(delay)

    return app
