"""Exit codes and the exceptions carrying them: the contract with AWS Batch's retry rules.

mutmut makes no mutants of ``analyzer.errors`` (class bodies and decorated functions), so its
behaviour is pinned here explicitly; the README's exit-code table is checked in test_settings.
"""

from __future__ import annotations

import pytest

from analyzer import errors
from analyzer.errors import ExitCode
from models import errors as model

EXPECTED = {
    errors.SettingsError: 2,
    errors.InputNotFound: 3,
    errors.AccessDenied: 4,
    errors.UndecodableVideo: 5,
    errors.InputRejected: 6,
    errors.VideoMismatch: 7,
    errors.WeightsError: 8,
    errors.AnalyzerError: 9,
    errors.InfrastructureError: 75,
    errors.LockLost: 75,
    errors.Interrupted: 143,
}


@pytest.mark.parametrize("error,code", EXPECTED.items(), ids=[e.__name__ for e in EXPECTED])
def test_each_error_carries_its_exit_code(error, code):
    assert error("x").exit_code == code
    assert error("x").exit_code.retryable is (code == 75)  # Batch retries 75 and nothing else


def test_only_retryable_is_retried():
    assert [code for code in ExitCode if code.retryable] == [ExitCode.RETRYABLE]
    assert issubclass(errors.LockLost, errors.InfrastructureError)


@pytest.mark.parametrize(
    "raised,expected",
    [
        (model.WeightsError("sha256 mismatch"), errors.WeightsError),
        (model.ModelSettingsError("unknown detector"), errors.SettingsError),
        (model.DownloadError("HTTP 503"), errors.InfrastructureError),
    ],
)
def test_model_errors_become_the_analyzers_with_the_same_message(raised, expected):
    with pytest.raises(expected, match=f"^{raised}$") as info, errors.model_errors():
        raise raised
    assert info.value.__cause__ is raised


def test_other_errors_pass_model_errors_untouched():
    with pytest.raises(KeyError), errors.model_errors():
        raise KeyError("boxes")
