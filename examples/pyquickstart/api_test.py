"""Tests of an API behind Auth0, in Python with the standard library only,
against `m2mtoken serve --tls` as the local Auth0 tenant and API.

What a pytest helper in such a project does: get a machine-to-machine token
with `m2mtoken token` (cached between runs, so a test run costs one token),
then call the API's routes with it over https, trusting the CA that serve
wrote (M2MTOKEN_CA_FILE, or SSL_CERT_FILE). It reads the variables serve
exports: AUTH0_DOMAIN, AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET, AUTH0_AUDIENCE.

    eval "$(m2mtoken serve --tls --ca-out /tmp/ca.pem | grep ^export)" &
    python3 -m unittest -v api_test
"""

import json
import os
import ssl
import subprocess
import unittest
import urllib.error
import urllib.request

M2MTOKEN = os.environ.get("M2MTOKEN_BIN", "m2mtoken")
API = "https://" + os.environ["AUTH0_DOMAIN"].rstrip("/")


def ssl_context():
    ca = os.environ.get("M2MTOKEN_CA_FILE") or os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=ca)


def get_token():
    """A token from `m2mtoken token`: stdout holds the token alone."""
    out = subprocess.run([M2MTOKEN, "token"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError("m2mtoken token failed: " + out.stderr.strip())
    return out.stdout.strip()


def call(path, token=None):
    req = urllib.request.Request(API + path)
    if token is not None:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, context=ssl_context(), timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, {"www-authenticate": e.headers.get("WWW-Authenticate", "")}


class QuickstartAPI(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.token = get_token()

    def test_public(self):
        status, body = call("/api/public")
        self.assertEqual(status, 200)
        self.assertIn("public endpoint", body["message"])

    def test_private_needs_a_token(self):
        status, body = call("/api/private")
        self.assertEqual(status, 401)
        self.assertIn("Bearer", body["www-authenticate"])

    def test_private_refuses_a_bad_token(self):
        status, body = call("/api/private", "not-a-token")
        self.assertEqual(status, 401)
        self.assertIn("invalid_token", body["www-authenticate"])

    def test_private(self):
        status, body = call("/api/private", self.token)
        self.assertEqual(status, 200)
        self.assertIn("private endpoint", body["message"])

    def test_private_scoped(self):
        status, body = call("/api/private-scoped", self.token)
        self.assertEqual(status, 200)
        self.assertIn("read:messages", body["message"])

    def test_token_is_cached(self):
        self.assertEqual(get_token(), self.token)


if __name__ == "__main__":
    unittest.main()
