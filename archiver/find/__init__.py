"""Finding image references in an article: front matter, Markdown, HTML, CSS ``url()`` and template tags.

``refs.find_refs`` is the one entry point; it returns exact spans. Imports: model, and the third-party parsers.
"""
