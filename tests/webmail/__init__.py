"""Tests for appnet.webmail."""
