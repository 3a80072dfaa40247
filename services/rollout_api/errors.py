"""Errors the store raises; the app maps each to one HTTP status with the message as `detail`."""

from __future__ import annotations


class StoreError(Exception):
    status_code = 500


class JobNotFound(StoreError):
    status_code = 404


class Conflict(StoreError):
    """The request is well-formed but contradicts the job's state (lost lease, different trajectory, ...)."""

    status_code = 409


class StoreUnavailable(StoreError):
    """The database could not be reached or stayed locked past the busy timeout; safe to retry."""

    status_code = 503


class OutcomeConflict(Conflict):
    """A submission lost: the job already has a different trajectory or a recorded failure."""


class BadRequest(StoreError):
    """Well-formed JSON that the store still can't accept (NaN, invalid unicode, ids that disagree)."""

    status_code = 422
