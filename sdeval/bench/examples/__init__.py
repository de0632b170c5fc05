"""Example bench configs shipped with sdeval (`sdeval bench builtin:NAME`); the YAML files are package data."""
