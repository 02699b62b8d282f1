"""Errors raised by readers."""


class InputFileError(RuntimeError):
    """A whole input file cannot be read. The message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class ModelFileError(RuntimeError):
    """A model file or its card cannot be used. The message names the file and the problem."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
