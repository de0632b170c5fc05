"""Every model a run needs: the table of which metric, judge and scorer needs which model (table.py), where each is
looked for and whether it is there (locate.py), the checks a run makes before any work (check.py), and
`sdeval models` (command.py)."""
