"""archiver: archive the images articles reference and rewrite the articles to the archived copies."""

__version__ = "0.1.0"
