"""Tests for appnet.store."""
