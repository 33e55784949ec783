"""Calling the JSON API in tests: every answer is checked against the OpenAPI schema the site serves."""

import re

from django.test import Client
from jsonschema import Draft202012Validator

from dashboard.models import ApiToken


def openapi():
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200, response.content
    return response.json()


def api_as(client):
    """The API with a test client's session (a page's figures are read from its API twin: pages answer HTML)."""
    return Api(openapi(), client=client)


class Api:
    """A client for one caller (a bearer token, a logged-in session, or nobody) that validates every answer:
    its status must be one the schema documents for the operation, its body JSON that validates against it."""

    def __init__(self, schema, token=None, client=None):
        self.schema = schema
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.routes = [(re.compile("^" + re.sub(r"\{(\w+)\}", lambda m: "(.+)" if m[1] == "token_id" else "([^/]+)",
                                                path) + "$"), path)
                       for path in schema["paths"]]

    def get(self, url, params=None, **kwargs):
        return self.call("get", url, params, **kwargs)

    def post(self, url, body=None, **kwargs):
        return self.call("post", url, body, content_type="application/json", **kwargs)

    def call(self, method, url, data=None, **kwargs):
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response = getattr(self.client, method)(url, data, headers=headers, **kwargs)
        self.check(method, url.split("?")[0], response)
        return response

    def check(self, method, path, response):
        assert response["Content-Type"].startswith("application/json"), (response.status_code, response.content[:300])
        body = response.json()
        template = next((t for rx, t in self.routes if rx.match(path)), None)
        operation = self.schema["paths"].get(template, {}).get(method) if template else None
        if operation is None:  # no such endpoint: still a JSON error
            assert response.status_code in (404, 405) and isinstance(body.get("detail"), str), body
            return
        documented = operation["responses"]
        assert str(response.status_code) in documented, (
            f"{method.upper()} {template} answered {response.status_code}, not in {sorted(documented)}: {body}")
        schema = documented[str(response.status_code)]["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": self.schema["components"]},
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
        assert not problems, f"{method.upper()} {template} {response.status_code} breaks its schema: {problems[:5]}"


def token_for(user, scope=ApiToken.OPERATE, pools=()):
    """A token that may do what its owner may (unless told `scope="read"` or some `pools`)."""
    return ApiToken.issue(user, "test script", scope, pools)[1]
