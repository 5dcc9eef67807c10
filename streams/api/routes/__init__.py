"""The routes, one module per group; each ``router(...)`` returns its FastAPI router.

Paths are written whole (``V1`` included), so the route that answers a request
names its own template for the HTTP metrics.
"""

#: Prefix of the versioned routes (the ones API keys, the in-flight limit and the timeout guard).
V1 = "/v1"
