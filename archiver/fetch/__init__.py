"""Fetching one URL to a temp file: the client, body streaming, retry policy, host pauses, the SSRF guard, sniffing.
"""
