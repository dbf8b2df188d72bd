"""User-facing errors: the CLI prints these as one line instead of a traceback."""


class GptlabError(Exception):
    """A problem with the user's input (file, config, checkpoint, prompt) that they can fix."""

    exit_code = 1


class Interrupted(GptlabError):
    """Work stopped by a signal after saving what it had; the exit status says which signal."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum
