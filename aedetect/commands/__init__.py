"""The subcommands of ``aedetect`` (see :mod:`aedetect.cli`, which parses the command line).

- :mod:`.screen`: fit on a table (or images) and score every row of it, with a report;
- :mod:`.fit` and :mod:`.score`: train once, save the model, score other files in chunks;
- :mod:`.demo`: the screening of a bundled table;
- :mod:`.io` reads and writes the files, :mod:`.report` writes the HTML report.

A mistake of the user (a missing file, columns that differ from the model's) raises
:class:`CommandError`; the command line prints its message on one line and exits with
status 2, without a traceback.
"""


class CommandError(ValueError):
    """A problem with the command's input that the user can fix; the message says how."""
