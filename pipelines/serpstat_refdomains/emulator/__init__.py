"""Local Serpstat API v4 emulator with a synthetic, evolving link graph (Serpstat's public API v4
documentation; docs/operations.md, "Commands")."""

from .api import ApiError, LogEntry, SerpstatApi
from .faults import Fault, FaultPlan
from .graph import EPOCH, Donor, LinkGraph, Profile, in_last_week
from .server import SerpstatEmulator

__all__ = [
           "EPOCH",
           "ApiError",
           "Donor",
           "Fault",
           "FaultPlan",
           "LinkGraph",
           "LogEntry",
           "Profile",
           "SerpstatApi",
           "SerpstatEmulator",
           "in_last_week",
]
