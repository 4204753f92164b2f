"""The HTTP API and the ``attest`` CLI: they wire the stages, they hold no business logic."""
