"""`sdeval bench`: one config from generation to a verdict. config.py reads and checks a config before any model
loads; stages.py runs generate -> score -> gate -> report, each resumable; command.py is the CLI command."""
