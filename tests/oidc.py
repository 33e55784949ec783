"""A real OpenID Connect provider for the single sign-on tests: tests/oidc_provider.mjs (npm oidc-provider, pinned
in package.json) in a child process, with people and their groups in a JSON file the test may rewrite."""

import json
import os
import subprocess
import time
from pathlib import Path

import requests

from localsite.embedded import BASE_DIR, EmbeddedError, free_port, stop_process

SCRIPT = Path(__file__).resolve().parent / "oidc_provider.mjs"


class OpenIdProvider:
    def __init__(self, workdir, redirect_uris, client_id="picas-dashboard", client_secret="test-client-secret",
                 issuer=None, id_token_override=None, post_logout_uris=()):
        self.workdir, self.port = Path(workdir), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.issuer = issuer or self.url  # what the provider says it is (a test may make it say otherwise)
        self.client_id, self.client_secret = client_id, client_secret
        self.redirect_uris, self.id_token_override = redirect_uris, id_token_override
        self.post_logout_uris = post_logout_uris  # where the provider may send a browser back after logging out
        self.accounts_file = self.workdir / "accounts.json"
        self.process = None

    def set_people(self, people):
        """{login: claims}: who may sign in (any password), with their claims (eduperson_entitlement etc.)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.accounts_file.write_text(json.dumps(people))

    def start(self, timeout=30):
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.accounts_file.exists():
            self.set_people({})
        env = {**os.environ, "PORT": str(self.port), "ISSUER": self.issuer, "CLIENT_ID": self.client_id,
               "CLIENT_SECRET": self.client_secret, "REDIRECT_URIS": " ".join(self.redirect_uris),
               "ACCOUNTS_FILE": str(self.accounts_file), "POST_LOGOUT_URIS": " ".join(self.post_logout_uris),
               "NODE_NO_WARNINGS": "1"}
        if self.id_token_override:
            env["ID_TOKEN_OVERRIDE"] = json.dumps(self.id_token_override)
        self.log = open(self.workdir / "provider.log", "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(["node", str(SCRIPT)], cwd=BASE_DIR, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedError(f"the OpenID provider exited: {(self.workdir / 'provider.log').read_text()}")
            try:
                if requests.get(self.url + "/.well-known/openid-configuration", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise EmbeddedError("the OpenID provider did not start")

    def stop(self):
        stop_process(self.process)
        self.process = None
        self.log.close()
