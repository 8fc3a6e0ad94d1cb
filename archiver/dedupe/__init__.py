"""Near-duplicates: pair search (hash index engines), grouping, canonical rewrites and the report.
"""
