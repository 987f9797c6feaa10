"""S3 failures to exit codes (``analyzer.source.s3.translate``): every kind of trouble, one code.

The errors are botocore's and s3transfer's own classes with S3's error bodies; the real server's
answers (404, 403, 400 for a bad key, unreachable) are in tests/pipeline/test_source.py. S3 gives
500/503 and throttling only under load, so those are built here.
"""

from __future__ import annotations

import pytest
from boto3 import exceptions as b3e
from botocore import exceptions as bce
from s3transfer import exceptions as s3te

from analyzer.errors import AccessDenied, ExitCode, InputNotFound, SettingsError
from analyzer.source.s3 import check_bucket, check_key, s3_errors, split_s3_uri, translate

WHAT = "input s3://uploads/videos/a.mp4"


def client_error(code: str, status: int, **error: str) -> bce.ClientError:
    response = {"Error": {"Code": code, "Message": "from S3", **error}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return bce.ClientError(response, "GetObject")


CLIENT_ERRORS = [  # code, HTTP status, exit code, what the message says
    ("InternalError", 500, ExitCode.RETRYABLE, "S3 error InternalError"),
    ("ServiceUnavailable", 503, ExitCode.RETRYABLE, "S3 error ServiceUnavailable"),
    ("SlowDown", 503, ExitCode.RETRYABLE, "S3 error SlowDown"),
    ("", 503, ExitCode.RETRYABLE, "S3 error 503"),  # a HEAD's error has no body
    ("", 500, ExitCode.RETRYABLE, "S3 error 500"),
    ("SlowDown", 400, ExitCode.RETRYABLE, "S3 error SlowDown"),
    ("Throttling", 400, ExitCode.RETRYABLE, "S3 error Throttling"),
    ("RequestTimeout", 400, ExitCode.RETRYABLE, "S3 error RequestTimeout"),
    ("PreconditionFailed", 412, ExitCode.RETRYABLE, "changed while it was being fetched"),
    ("", 412, ExitCode.RETRYABLE, "changed while it was being fetched"),
    ("AccessDenied", 403, ExitCode.ACCESS_DENIED, "access denied (AccessDenied)"),
    ("", 403, ExitCode.ACCESS_DENIED, "access denied (403)"),
    ("ExpiredToken", 400, ExitCode.RETRYABLE, "the AWS credentials expired (ExpiredToken)"),
    ("ExpiredToken", 403, ExitCode.RETRYABLE, "the AWS credentials expired (ExpiredToken)"),
    ("TokenRefreshRequired", 400, ExitCode.RETRYABLE, "the AWS credentials expired (TokenRefreshRequired)"),
    ("InvalidToken", 400, ExitCode.ACCESS_DENIED, "access denied (InvalidToken)"),
    ("SignatureDoesNotMatch", 403, ExitCode.ACCESS_DENIED, "access denied"),
    ("NoSuchKey", 404, ExitCode.INPUT_NOT_FOUND, "no such object (NoSuchKey)"),
    ("", 404, ExitCode.INPUT_NOT_FOUND, "no such object (404)"),
    ("NotFound", 400, ExitCode.INPUT_NOT_FOUND, "no such object (NotFound)"),
    ("InvalidBucketName", 400, ExitCode.BAD_SETTINGS, "S3 refused the request (InvalidBucketName)"),
    ("AuthorizationHeaderMalformed", 400, ExitCode.BAD_SETTINGS, "S3 refused the request"),
    ("InvalidArgument", 400, ExitCode.INPUT_NOT_FOUND, "S3 refused the key as invalid (InvalidArgument)"),
    ("KeyTooLongError", 400, ExitCode.INPUT_NOT_FOUND, "S3 refused the key as invalid (KeyTooLongError)"),
    ("UnknownError", 404, ExitCode.INPUT_NOT_FOUND, "no such object (UnknownError)"),
    ("UnknownError", 403, ExitCode.ACCESS_DENIED, "access denied (UnknownError)"),
    ("UnknownError", 412, ExitCode.RETRYABLE, "changed while it was being fetched"),
    ("PreconditionFailed", 400, ExitCode.RETRYABLE, "changed while it was being fetched"),
]


@pytest.mark.parametrize("code,status,exit_code,says", CLIENT_ERRORS, ids=[f"{c[0]}-{c[1]}" for c in CLIENT_ERRORS])
def test_client_errors(code, status, exit_code, says):
    error = translate(client_error(code, status), WHAT)
    assert error.exit_code is exit_code
    assert str(error).startswith(f"{WHAT}: ") and says in str(error), str(error)


def test_a_missing_bucket_is_named_and_the_caller_chooses_the_error():
    error = translate(client_error("NoSuchBucket", 404, BucketName="uploads"), WHAT)
    assert isinstance(error, InputNotFound) and str(error) == f"{WHAT}: no such bucket uploads (NoSuchBucket)"
    assert str(translate(client_error("NoSuchBucket", 404), WHAT)) == f"{WHAT}: no such bucket (NoSuchBucket)"
    assert isinstance(translate(client_error("NoSuchKey", 404), WHAT, not_found=SettingsError), SettingsError)


def test_a_transfer_wraps_the_client_error_it_met():
    try:
        try:
            raise client_error("AccessDenied", 403)
        except bce.ClientError as inner:
            raise b3e.S3TransferFailedError("Failed to download") from inner
    except b3e.S3TransferFailedError as outer:
        assert isinstance(translate(outer, WHAT), AccessDenied)


NON_CLIENT_ERRORS = [
    (bce.EndpointConnectionError(endpoint_url="http://s3.local"), ExitCode.RETRYABLE, "S3 unreachable"),
    (bce.ConnectTimeoutError(endpoint_url="http://s3.local"), ExitCode.RETRYABLE, "S3 unreachable"),
    (bce.ReadTimeoutError(endpoint_url="http://s3.local"), ExitCode.RETRYABLE, "S3 unreachable"),
    (bce.NoCredentialsError(), ExitCode.RETRYABLE, "no usable AWS credentials"),
    (bce.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), ExitCode.RETRYABLE, "credentials"),
    (s3te.S3DownloadFailedError("IfMatch failed"), ExitCode.RETRYABLE, "changed while it was being downloaded"),
    (s3te.RetriesExceededError(last_exception=OSError("reset")), ExitCode.RETRYABLE, "S3 transfer failed"),
    (b3e.S3TransferFailedError("reset"), ExitCode.RETRYABLE, "S3 transfer failed"),
    (ConnectionResetError("reset by peer"), ExitCode.RETRYABLE, "S3 transfer failed"),
    (TimeoutError("timed out"), ExitCode.RETRYABLE, "S3 transfer failed"),
    (bce.ParamValidationError(report="Invalid bucket name"), ExitCode.BAD_SETTINGS, "invalid S3 request"),
]


@pytest.mark.parametrize("exc,exit_code,says", NON_CLIENT_ERRORS, ids=[type(e[0]).__name__ for e in NON_CLIENT_ERRORS])
def test_transport_and_client_side_errors(exc, exit_code, says):
    error = translate(exc, WHAT)
    assert error.exit_code is exit_code and says in str(error), str(error)


def test_anything_else_is_a_bug_and_passes_through():
    assert translate(KeyError("Body"), WHAT) is None
    with pytest.raises(KeyError):
        with s3_errors(WHAT):
            raise KeyError("Body")


def test_s3_errors_raises_the_translation_and_lets_project_errors_through():
    with pytest.raises(AccessDenied) as info:
        with s3_errors(WHAT):
            raise client_error("AccessDenied", 403)
    assert isinstance(info.value.__cause__, bce.ClientError)
    with pytest.raises(InputNotFound, match="^already ours$"):
        with s3_errors(WHAT):
            raise InputNotFound("already ours")


@pytest.mark.parametrize(
    "response,says",
    [
        ({"ResponseMetadata": {"HTTPStatusCode": 404}}, "no such object (404)"),
        ({"Error": {"Message": "no code"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "S3 error 503"),
        ({"Error": {"Code": "InternalError"}}, "S3 error InternalError"),
        ({}, "S3 error 0"),
    ],
)
def test_a_response_without_code_or_status_still_translates(response, says):
    assert str(translate(bce.ClientError(response, "HeadObject"), WHAT)) == f"{WHAT}: {says}"


def test_a_refused_request_quotes_botocore_on_one_line():
    error = translate(bce.ParamValidationError(report="Invalid bucket name\n  must match a pattern"), WHAT)
    assert str(error) == (
        f"{WHAT}: invalid S3 request (Parameter validation failed: Invalid bucket name must match a pattern)"
    )


@pytest.mark.parametrize(
    "uri,says",
    [
        ("http://bucket/key", "not an s3:// URI: 'http://bucket/key'"),
        ("s3://bucket/", "s3 URI needs a bucket and a key: 's3://bucket/'"),
        ("s3:///key.mp4", "s3 URI needs a bucket and a key: 's3:///key.mp4'"),
        ("s3://a b/k", "s3 URI 's3://a b/k': invalid S3 bucket name 'a b' (letters, digits, '.', '-', '_')"),
    ],
)
def test_split_s3_uri_says_what_is_wrong(uri, says):
    with pytest.raises(SettingsError) as info:
        split_s3_uri(uri)
    assert str(info.value) == says


def test_bucket_names_and_access_point_arns():
    arn = "arn:aws:s3:eu-west-1:123456789012:accesspoint/uploads"
    assert (check_bucket(arn), check_bucket("Legacy_Bucket.1")) == (arn, "Legacy_Bucket.1")
    for bad in ("arn:aws:s3:::a b", "arn:aws:s3:::ap\n", "uploads!", ""):
        with pytest.raises(ValueError) as info:
            check_bucket(bad)
        assert str(info.value) == f"invalid S3 bucket name {bad!r} (letters, digits, '.', '-', '_')"


def test_keys_up_to_1024_bytes_without_control_characters():
    assert check_key("é" * 512) == "é" * 512
    for bad, says in (
        ("", "empty S3 key"),
        ("é" * 512 + "x", "S3 key longer than 1024 bytes"),
        ("a\x7fb", "S3 key 'a\\x7fb' contains control characters"),
    ):
        with pytest.raises(ValueError) as info:
            check_key(bad)
        assert str(info.value) == says
