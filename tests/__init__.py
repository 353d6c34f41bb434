"""appnet's tests, mirroring the appnet package."""
