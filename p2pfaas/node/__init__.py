"""The volunteer node daemon: verifies, fetches and runs invocations; announces itself to the anchor."""
