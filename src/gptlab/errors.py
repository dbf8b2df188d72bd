"""User-facing errors: the CLI prints these as one line instead of a traceback."""


class GptlabError(Exception):
    """A problem with the user's input (file, config, checkpoint, prompt) that they can fix."""
