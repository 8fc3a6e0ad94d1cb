"""The image stage: decode once, renditions and similarity signatures (``process``), in a worker pool (``pool``;
what runs in each worker: ``worker``).
"""
