"""
Robustness tests: every server protocol fed hostile input from seeded
generators, checked against the project's guarantee that bad input gets
the protocol's error reply and the session goes on, with no traceback
shown to the client and nothing logged as an unhandled failure.
"""
