"""Errors raised by readers."""


class _FileProblem(RuntimeError):
    """A file that cannot be used: the message names the file and the problem. Pickles whole,
    so an error raised in a worker process reaches the parent with its reason."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self) -> tuple:
        return type(self), (self.path, self.problem)


class InputFileError(_FileProblem):
    """A whole input file cannot be read. The message names the file and the problem."""


class ModelFileError(_FileProblem):
    """A model file or its card cannot be used. The message names the file and the problem."""
