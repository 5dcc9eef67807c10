"""Everything facestream needs from Kafka besides faust's own streams, in one wing.

Where things live:

* ``config``    client settings from :class:`~streams.config.Settings`, in confluent-kafka's and faust's spelling
* ``auth``      refused credentials become one typed error (librdkafka's error callback and log lines)
* ``preflight`` one handshake before a worker or a command starts, proving the brokers accept us
* ``topics``    the topic names and their declaration on the cluster
* ``clients``   the plain producer and the one read loop of commands, scripts, benchmarks and tests
* ``lag``       the worker's consumer-lag monitor, its witness of the broker for ``/readyz``
* ``commits``   faust's transport with commits that never pass an unanswered event
* ``highwaters`` its consumer thread, asking the broker for changelog ends (exactly-once recovery)
* ``changelog`` a compacted changelog read to its end in bulk (recovery, the API's gallery facts)
* ``changelog_store`` the gallery table's store, recovered through that bulk read before faust replays the tail
* ``changelog_writer`` that table's changelog records of a batch, written with aiokafka's batch API

Commands, scripts and tests import the names below from here; the worker's own
pieces (``lag``, ``commits``, faust's settings) are imported from their modules.
"""

from streams.kafka.clients import Producer, messages
from streams.kafka.config import confluent_consumer, confluent_producer
from streams.kafka.preflight import verify_kafka_credentials
from streams.kafka.topics import TopicNames, end_offsets, ensure_topics

__all__ = [
    "Producer",
    "TopicNames",
    "confluent_consumer",
    "confluent_producer",
    "end_offsets",
    "ensure_topics",
    "messages",
    "verify_kafka_credentials",
]
