"""The OpenAPI document tells the truth: every `/v1` operation documents the errors it can
give, in the one error shape the API sends (never FastAPI's HTTPValidationError, which it
never returns); and /docs works offline."""

from tests.conftest import controlled_backend, make_settings, start_api

KEYED = {"401", "422", "429", "503"}  # any route behind an API key


async def test_every_operation_documents_its_errors_in_the_real_shape(database_url):
    async for api in start_api(make_settings(database_url), controlled_backend()):
        spec = (await api.client.get("/openapi.json")).json()
        schemas = spec["components"]["schemas"]
        assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
        assert set(schemas["ErrorBody"]["properties"]) == {"error"}
        for path, operations in spec["paths"].items():
            for method, operation in operations.items():
                # Written for people: not FastAPI's title-cased function name.
                assert not operation["summary"].istitle(), (method, path, operation["summary"])
                responses = operation["responses"]
                if "requestBody" in operation:  # over the body limit; an example to start from
                    assert "413" in responses, (method, path)
                    content = operation["requestBody"]["content"]
                    if "application/octet-stream" not in content:  # raw bytes: no example
                        body = content.get("application/json") or content["multipart/form-data"]
                        body = body["schema"]
                        body = schemas[body["$ref"].split("/")[-1]] if "$ref" in body else body
                        assert body["examples"], (method, path)
                if path.startswith("/v1") and not path.startswith("/v1/objects"):
                    assert set(responses) >= KEYED, (method, path)
                    assert "Retry-After" in responses["429"]["headers"]
                for status, response in responses.items():
                    if status.startswith(("4", "5")):
                        schema = response["content"]["application/json"]["schema"]
                        assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, status)
        readiness = spec["paths"]["/readiness"]["get"]["responses"]
        assert "503" in readiness


async def test_the_docs_page_needs_no_cdn(database_url):
    async for api in start_api(make_settings(database_url), controlled_backend()):
        page = await api.client.get("/docs")
        assert page.status_code == 200
        assert "cdn." not in page.text and "unpkg" not in page.text
        assets = [part.split('"')[0] for part in page.text.split('src="')[1:]]
        assert assets, page.text[:500]
        for asset in assets:
            assert (await api.client.get(asset)).status_code == 200, asset
