"""Errors that the CLI turns into exit codes."""


class InputError(Exception):
    """The user's input is wrong (suite, task file, data, model path). Exit code 2, one line, no traceback."""

    def __init__(self, where: str, what: str):
        self.where = where
        self.what = what
        super().__init__(f"{where}: {what}" if where else what)


class TrialDiverged(Exception):
    """The training loss became NaN or inf."""
