"""Root conftest: the shared test fixtures live in automation_testing."""

pytest_plugins = ["automation_testing.plugin"]
