"""Real servers for the tests: an aiohttp origin with fault routes, and a SeaweedFS S3 server."""
