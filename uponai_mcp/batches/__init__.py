"""Batch outreach: many calls from one number, paced, in a weekly window, crash-safe (see `runner.py`)."""

from uponai_mcp import lazy

__getattr__ = lazy.exports(__name__, {
    "BatchService": ".service", "BatchCreated": ".views", "BatchList": ".views", "BatchView": ".views",
    "TaskView": ".views", "batch_uri": ".views", "CallTimeWindow": ".window", "TimeRange": ".window",
})

__all__ = ["BatchCreated", "BatchList", "BatchService", "BatchView", "CallTimeWindow", "TaskView", "TimeRange",
           "batch_uri"]
