"""Documents through the API on the real workers: uploaded as text, Markdown, HTML or PDF,
chunked, embedded by all-MiniLM-L6-v2 on vLLM, replaced, deleted; and every refusal."""

import asyncio

import pytest
from sqlalchemy import text

from app.storage import ObjectNotFound
from tests.app.test_ingest import pdf
from tests.conftest import HMAC_SECRET, controlled_backend, make_settings, start_api

GUIDE = """# Deploying
Tandem deploys with one command per environment.
## Rollback
To roll back, deploy the previous release again; the database is not migrated down.
"""


async def chunk_rows(api, document_id: str) -> list:
    async with api.app.state.engine.connect() as conn:
        result = await conn.execute(
            text(
                "SELECT heading, content, vector_dims(embedding) AS dim FROM chunks"
                " WHERE document_id = :id ORDER BY ord"
            ),
            {"id": document_id},
        )
        return result.all()


async def object_key(api, document_id: str) -> str:
    async with api.app.state.engine.connect() as conn:
        return await conn.scalar(
            text("SELECT object_key FROM documents WHERE id = :id"), {"id": document_id}
        )


async def test_json_document_is_chunked_embedded_and_stored(api):
    body = {"source_id": "guide", "text": GUIDE, "metadata": {"team": "infra", "v": 2}}
    response = await api.post("/v1/documents", json=body)
    assert response.status_code == 201, response.text
    document = response.json()
    assert document["title"] == "Deploying"  # the first heading
    assert document["content_type"] == "text/markdown"
    assert document["metadata"] == {"team": "infra", "v": 2}
    assert document["chunks"] == 2 and document["size_bytes"] == len(GUIDE.encode())

    rows = await chunk_rows(api, document["id"])
    assert [r.heading for r in rows] == ["Deploying", "Deploying > Rollback"]
    assert rows[1].content.startswith("To roll back") and {r.dim for r in rows} == {384}
    assert api.storage.get(await object_key(api, document["id"])) == GUIDE.encode()

    fetched = await api.get(f"/v1/documents/{document['id']}")
    assert fetched.status_code == 200 and fetched.json() == document


@pytest.mark.parametrize(
    ("filename", "content_type", "data", "heading", "title"),
    [
        ("notes.md", "text/markdown", b"# Notes\n## Today\nSome notes.", "Notes > Today", "Notes"),
        (
            "page.html",
            "text/html",
            b"<title>The Page</title><h1>Page</h1><p>Hello there.</p>",
            "Page",
            "The Page",
        ),
        ("plain.txt", "text/plain", b"Just text.", "", "plain.txt"),
        (
            "report.pdf",
            "application/octet-stream",
            pdf("Quarterly report."),
            "page 1",
            "report.pdf",
        ),
        (
            "q3.pdf",
            "application/pdf",
            pdf("Quarterly report.", title="Q3 Report"),
            "page 1",
            "Q3 Report",
        ),
    ],
)
async def test_files_of_each_type(api, filename, content_type, data, heading, title):
    files = {"file": (filename, data, content_type)}
    response = await api.post("/v1/documents", files=files, data={"metadata": '{"a": 1}'})
    assert response.status_code == 201, response.text
    document = response.json()
    assert document["source_id"] == filename and document["metadata"] == {"a": 1}
    rows = await chunk_rows(api, document["id"])
    assert len(rows) == 1 and rows[0].heading == heading
    assert document["title"] == title  # the file's own, else its name


async def test_same_source_id_replaces_the_document_atomically(api):
    first = await api.post("/v1/documents", json={"source_id": "faq", "text": "Old answer."})
    old = first.json()
    old_key = await object_key(api, old["id"])
    new_text = "# FAQ\nNew answer one.\n## More\nNew answer two."
    second = await api.post(
        "/v1/documents", json={"source_id": "faq", "title": "FAQ v2", "text": new_text}
    )
    assert second.status_code == 200, second.text
    new = second.json()
    assert new["id"] == old["id"] and new["title"] == "FAQ v2" and new["chunks"] == 2
    assert [r.content for r in await chunk_rows(api, new["id"])] == [
        "New answer one.",
        "New answer two.",
    ]
    with pytest.raises(ObjectNotFound):  # the replaced upload is gone from storage
        api.storage.get(old_key)
    assert api.storage.get(await object_key(api, new["id"])) == new_text.encode()


async def test_racing_replacements_leave_one_file_per_row(api):
    """20 uploads of one source_id at once: one row, one file, no file left without a row."""
    uploads = [
        api.post("/v1/documents", json={"source_id": "raced", "text": f"Version {n}."})
        for n in range(20)
    ]
    responses = await asyncio.gather(*uploads)
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    [document_id] = {r.json()["id"] for r in responses}
    key = await object_key(api, document_id)
    async with api.app.state.engine.connect() as conn:
        named = set((await conn.scalars(text("SELECT object_key FROM documents"))).all())
    files = {key for key, _ in api.storage.listed("documents/")}
    assert key in files and files <= named  # every file has its row
    text_now = api.storage.get(key).decode()
    assert text_now in {f"Version {n}." for n in range(20)}


async def test_a_failed_embedding_keeps_the_previous_version(api, database_url, tmp_path):
    created = await api.post("/v1/documents", json={"source_id": "keep", "text": "Version one."})
    document = created.json()
    key = await object_key(api, document["id"])
    stored_before = sorted(p.name for p in api.storage.root.rglob("*"))
    # The same database and storage, with a worker that answers no embeddings.
    settings = api.app.state.settings.model_copy()
    async for broken in start_api(settings, controlled_backend()):
        response = await broken.post("/v1/documents", json={"source_id": "keep", "text": "Two."})
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "worker_failed"
    assert (await api.get(f"/v1/documents/{document['id']}")).json() == document
    assert [r.content for r in await chunk_rows(api, document["id"])] == ["Version one."]
    assert await object_key(api, document["id"]) == key
    assert sorted(p.name for p in api.storage.root.rglob("*")) == stored_before


async def test_delete_removes_rows_chunks_and_the_file(api):
    document = (await api.post("/v1/documents", json={"source_id": "gone", "text": "Bye."})).json()
    key = await object_key(api, document["id"])
    assert (await api.delete(f"/v1/documents/{document['id']}")).status_code == 204
    assert (await api.get(f"/v1/documents/{document['id']}")).status_code == 404
    assert await chunk_rows(api, document["id"]) == []
    with pytest.raises(ObjectNotFound):
        api.storage.get(key)
    again = await api.delete(f"/v1/documents/{document['id']}")
    assert again.status_code == 404 and "not found" in again.json()["error"]["message"]


@pytest.mark.parametrize(
    ("request_kwargs", "status", "words"),
    [
        ({"files": {"file": ("a.png", b"\x89PNG....", "image/png")}}, 415, "unsupported file"),
        ({"files": {"file": ("a.csv", b"a,b", "text/csv")}}, 415, "unsupported file"),
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "multipart"),
        ({"files": {"file": ("e.md", b"", "text/markdown")}}, 422, "empty"),
        ({"files": {"file": ("b.md", b"  \n ", "text/markdown")}}, 422, "no text"),
        ({"files": {"file": ("x.pdf", b"%PDF-1.4 junk", "application/pdf")}}, 422, "PDF"),
        ({"files": {"file": ("l.txt", "é".encode("latin-1"), "text/plain")}}, 422, "UTF-8"),
        ({"files": {"other": ("a.md", b"x", "text/markdown")}}, 422, "named `file`"),
        (
            {"files": {"file": ("a.md", b"x", "text/markdown")}, "data": {"metadata": "[1]"}},
            422,
            "metadata",
        ),
        (
            {"files": {"file": ("a.md", b"x", "text/markdown")}, "data": {"metadata": "{"}},
            422,
            "JSON object",
        ),
        ({"json": {"text": "no source"}}, 422, "source_id"),
        ({"json": {"source_id": "s", "text": "t", "color": "red"}}, 422, "color"),
        ({"json": {"source_id": "s", "text": "t", "metadata": {"a": [1]}}}, 422, "metadata"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, ""),
    ],
)
async def test_bad_uploads_are_refused_with_the_reason(api, request_kwargs, status, words):
    response = await api.post("/v1/documents", **request_kwargs)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


async def test_uploads_have_their_own_size_limit(database_url, local_backend, tmp_path):
    settings = make_settings(
        database_url,
        signing_secret=HMAC_SECRET,
        storage_dir=tmp_path,
        max_body_bytes=1024,
        max_upload_bytes=2048,
    )
    async for small in start_api(settings, local_backend):
        # Over the general body limit, within the upload limit.
        medium = {"source_id": "medium", "text": "word " * 300}
        assert (await small.post("/v1/documents", json=medium)).status_code == 201
        chat = {"user_id": "u", "message": "word " * 300}
        assert (await small.post("/v1/chat", json=chat)).status_code == 413
        # A file over the upload limit: its size is named.
        files = {"file": ("big.txt", b"x" * 3000, "text/plain")}
        response = await small.post("/v1/documents", files=files)
        assert response.status_code == 413
        assert "limit is 2048 (MAX_UPLOAD_BYTES)" in response.json()["error"]["message"]
        # Far over: refused from Content-Length before the body is read.
        huge = {"source_id": "huge", "text": "y" * 70_000}
        assert (await small.post("/v1/documents", json=huge)).status_code == 413
    assert len([p for p in tmp_path.rglob("*") if p.is_file()]) == 1  # only `medium`


async def test_unknown_documents_and_bad_ids(api):
    missing = "00000000-0000-0000-0000-000000000000"
    assert (await api.get(f"/v1/documents/{missing}")).status_code == 404
    assert (await api.get("/v1/documents/not-a-uuid")).status_code == 422
    assert (await api.client.get(f"/v1/documents/{missing}")).status_code == 401  # no key


async def test_a_form_over_the_field_limit_is_413_and_a_broken_one_422(api):
    fields = {f"extra{n}": "x" for n in range(10)}
    crowded = await api.post(
        "/v1/documents", files={"file": ("a.md", b"# A\ntext", "text/markdown")}, data=fields
    )
    assert crowded.status_code == 413, crowded.text  # a documented limit, not a bare 400
    assert crowded.json()["error"]["code"] == "body_too_large"
    assert "Too many fields" in crowded.json()["error"]["message"]
    broken = await api.post(
        "/v1/documents",
        content=b"--b\r\nContent-Disposition: form-data; name=file; filename=a.md\r\n\r\nno end",
        headers={"Content-Type": "multipart/form-data; boundary=b"},
    )
    assert broken.status_code == 422, broken.text
    assert broken.json()["error"]["code"] == "validation_error"
