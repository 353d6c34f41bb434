"""
Example test suites using appnet's fixtures, as a project of your own
would: C{python -m twisted.trial examples} (Deferred-style and
C{async def} tests under trial) and C{pytest examples/pytest}.
"""
