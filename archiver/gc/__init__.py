"""Clean-up (`archiver gc`): which recorded objects nothing uses any more (usage.py: the articles on disk;
sweep.py: the manifest's own holds, the plan and its deletion in small re-checked batches under the manifest's lock).
"""
