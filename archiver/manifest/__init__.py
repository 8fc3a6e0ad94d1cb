"""The manifest: the record of every URL, asset, object and article (``sqlite``), its schema and migrations.
"""
