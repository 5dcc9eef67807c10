"""What the tests, benchmarks and scripts share: real services and real inputs, never mocks.

Start with :mod:`tests.support.broker` (a real Kafka broker), :mod:`tests.support.worker`
(a real worker process) and :mod:`tests.support.topics` (reading its output back);
:mod:`tests.support.triton` runs a real Triton server, :mod:`tests.support.photos`
fetches the pinned photographs and :mod:`tests.support.bad_inputs` builds the payloads
every layer must refuse. The pytest fixtures over them are plugins in
:mod:`tests.support.fixtures`, registered by ``tests/conftest.py``.
"""

from pathlib import Path

#: The repository root: where the worker runs and the caches live.
REPO = Path(__file__).resolve().parents[2]
