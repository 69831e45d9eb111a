"""Errors that the CLI turns into exit codes."""


class InputError(Exception):
    """The user's input is wrong (suite, task file, data, model path). Exit code 2, one line, no traceback."""

    def __init__(self, where: str, what: str):
        self.where = where
        self.what = what
        super().__init__(one_line(f"{where}: {what}" if where else what))


def one_line(text: str) -> str:
    """Escape line breaks and control characters (a key or value from the input may hold any): the message stays
    one line, and cannot drive the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (libraries raise many-line ones), else its type's name."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class TrialDiverged(Exception):
    """The training loss became NaN or inf."""
