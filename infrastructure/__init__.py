"""Persistence wiring, read-model tables, settings, logging and the API key store."""
