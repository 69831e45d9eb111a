"""What a task is: the GLUE registry, user tasks from files, reading, tokenising and metrics."""

from tasks.spec import TaskSpec

__all__ = ["TaskSpec"]
