"""The one exception type that the command line turns into a single clear error line."""


class UserError(Exception):
    """Bad input from the user: a missing or malformed file, a wrong option.

    The message names the file (or option) and what is wrong with it. The CLI prints it as
    one line and exits with code 2; no traceback.
    """
