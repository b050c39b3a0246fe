"""Batch outreach: many calls from one number, paced, in a weekly window, crash-safe (see `runner.py`)."""

from .service import BatchService
from .views import BatchCreated, BatchList, BatchView, TaskView, batch_uri
from .window import CallTimeWindow, TimeRange

__all__ = ["BatchCreated", "BatchList", "BatchService", "BatchView", "CallTimeWindow", "TaskView", "TimeRange",
           "batch_uri"]
