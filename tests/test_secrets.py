"""Secrets in URLs: one rule (``exporter.secrets.mask_url``) for every log line, message, repr and
description, the Kizeo client's included."""
import io

import pytest
import requests

from exporter.errors import SourceError
from exporter.secrets import mask, mask_url


@pytest.mark.parametrize(("text", "masked"), [
    ("postgresql://etl:s3cr3t@db/forms", "postgresql://etl:***@db/forms"),
    ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    # a password holding "@" or a quote is hidden whole
    ("sftp://u:p@ss@host/x", "sftp://u:***@host/x"),
    ('mysql+pymysql://root:p"w@h/db', "mysql+pymysql://root:***@h/db"),
    # query parameters that name a secret: tokens, Azure SAS signatures, S3 presigned URLs
    ("https://h/rest/v3?access_token=xyz&page=2", "https://h/rest/v3?access_token=***&page=2"),
    ("https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=AbC%2Fd&se=2030",
     "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=***&se=2030"),
    ("https://s3/b/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=f00", "https://s3/b/k?X-Amz-Credential=***&X-Amz-Signature=***"),
    # in a fragment too (OAuth's implicit flow), and a quote inside a value does not end it
    ("https://app/cb#access_token=abc&state=1", "https://app/cb#access_token=***&state=1"),
    ('https://h/x?token=ab"cd&page=2', "https://h/x?token=***&page=2"),
    # what is not secret stays readable
    ("file:///out?csv_bom=true", "file:///out?csv_bom=true"),
    ("https://forms.kizeo.com/rest/v3", "https://forms.kizeo.com/rest/v3"),
    ("http://host:8080/path", "http://host:8080/path"),
])
def test_mask_url(text, masked):
    assert mask_url(text) == masked


def test_every_url_of_a_message_is_masked_and_the_words_around_stay():
    line = "copy from 'ftp://a:one@h/x' to sftp://b:two@k/y?token=three failed"
    assert mask(line) == "copy from 'ftp://a:***@h/x' to sftp://b:***@k/y?token=*** failed"


def test_the_kizeo_package_uses_the_one_rule():
    from exporter.connectors import kizeo
    from exporter.connectors.kizeo import http_errors

    assert kizeo.mask_url is mask_url and http_errors.mask_url is mask_url


def test_a_redirect_to_a_url_with_a_token_is_reported_masked():
    from exporter.connectors.kizeo.http_errors import raise_for_status

    resp = requests.Response()
    resp.status_code = 302
    resp.headers["Location"] = "https://login.example/cb?page=2&token=SECRET123"
    resp.raw = io.BytesIO(b"")  # an empty body
    with pytest.raises(SourceError) as e:
        raise_for_status(resp, "https://forms.kizeo.com/rest/v3", "GET /forms", lambda s: s)
    assert "SECRET123" not in str(e.value) and "page=2" in str(e.value) and "login.example/cb" in str(e.value)
