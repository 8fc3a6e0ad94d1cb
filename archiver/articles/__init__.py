"""Article files: walking and decoding them byte-exactly, splicing spans and writing atomically, span mapping.
"""
