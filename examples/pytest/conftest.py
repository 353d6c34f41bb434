"""appnet's pytest fixtures (on pytest-twisted)."""

pytest_plugins = ["appnet.pytest_plugin"]
