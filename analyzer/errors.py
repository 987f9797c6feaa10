"""Exit codes and the exceptions that carry them.

The exit code is the worker's contract with AWS Batch (``retryStrategy.evaluateOnExit``):

====  =======================  =========  ==================================================
code  name                     retry?     meaning
====  =======================  =========  ==================================================
0     OK                       -          analysed, or skipped as a duplicate / already done
2     BAD_SETTINGS             no         a setting is missing, invalid or given twice apart,
                                          its folder unwritable, refused by the database
3     INPUT_NOT_FOUND          no         the input does not exist, is refused as invalid by S3,
                                          is not a regular file, or a symlink loop
4     ACCESS_DENIED            no         S3 refused access to the object
5     UNDECODABLE_VIDEO        no         no decodable video frame in the input
6     INPUT_REJECTED           no         over the resolution or duration limit
7     VIDEO_MISMATCH           no         video_id does not match the videos table
8     MODEL_WEIGHTS            no         model weights missing or corrupt (sha256)
9     INTERNAL_ERROR           no         a bug: an unexpected exception
75    RETRYABLE                yes        database/S3 unreachable, lock or heartbeat lost, CUDA OOM,
                                          input changed while read, local disk full
143   INTERRUPTED              no         stopped by SIGTERM (cancel, Spot reclaim)
====  =======================  =========  ==================================================

Spot reclaims are retried by Batch's ``Host EC2*`` status-reason rule, not by exit code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

from models import errors as model


class ExitCode(IntEnum):
    OK = 0
    BAD_SETTINGS = 2
    INPUT_NOT_FOUND = 3
    ACCESS_DENIED = 4
    UNDECODABLE_VIDEO = 5
    INPUT_REJECTED = 6
    VIDEO_MISMATCH = 7
    MODEL_WEIGHTS = 8
    INTERNAL_ERROR = 9
    RETRYABLE = 75  # sysexits EX_TEMPFAIL
    INTERRUPTED = 143  # 128 + SIGTERM

    @property
    def retryable(self) -> bool:
        return self is ExitCode.RETRYABLE


class AnalyzerError(Exception):
    """Base of every failure the worker knows; ``exit_code`` says whether a retry helps."""

    exit_code: ExitCode = ExitCode.INTERNAL_ERROR


class SettingsError(AnalyzerError):
    exit_code = ExitCode.BAD_SETTINGS


class InputNotFound(AnalyzerError):
    exit_code = ExitCode.INPUT_NOT_FOUND


class AccessDenied(AnalyzerError):
    exit_code = ExitCode.ACCESS_DENIED


class UndecodableVideo(AnalyzerError):
    exit_code = ExitCode.UNDECODABLE_VIDEO


class InputRejected(AnalyzerError):
    exit_code = ExitCode.INPUT_REJECTED


class VideoMismatch(AnalyzerError):
    exit_code = ExitCode.VIDEO_MISMATCH


class WeightsError(AnalyzerError):
    exit_code = ExitCode.MODEL_WEIGHTS


class InfrastructureError(AnalyzerError):
    """Database, S3 or GPU trouble that a later attempt may not meet."""

    exit_code = ExitCode.RETRYABLE


class LockLost(InfrastructureError):
    """The advisory-lock connection died or another run took the video over."""


class HeartbeatLost(InfrastructureError):
    """The heartbeat's own session failed: the lock may still be held, but no one can tell."""


class Interrupted(AnalyzerError):
    """SIGTERM arrived; the run stops without writing."""

    exit_code = ExitCode.INTERRUPTED


@contextmanager
def model_errors() -> Iterator[None]:
    """The model library's errors as the analyzer's, with their exit codes (a decorator too).

    Raises:
        WeightsError: weights missing, corrupt or of the wrong sha256 (exit 8).
        SettingsError: a model setting that cannot work (exit 2).
        InfrastructureError: a weights download failed (exit 75).
    """
    try:
        yield
    except model.WeightsError as exc:
        raise WeightsError(str(exc)) from exc
    except model.ModelSettingsError as exc:
        raise SettingsError(str(exc)) from exc
    except model.DownloadError as exc:
        raise InfrastructureError(str(exc)) from exc
