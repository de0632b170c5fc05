"""JSON Schemas of the files sdeval writes (shipped as package data)."""
