"""Documents and ingest jobs: upload (a background job), list, delete; job status."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.auth import Principal
from api.deps import authenticate, get_services, readable_collection, writable_collection
from api.errors import Problem
from api.jobs import sanitise_name
from api.records import utc_now
from api.routes import problems
from api.schemas import COLLECTION_PATTERN, DocumentDeleted, DocumentList, DocumentOut, JobAccepted, JobOut
from api.services import Services

router = APIRouter(prefix="/v1", tags=["documents"])


@router.post("/documents", status_code=202, response_model=JobAccepted,
             summary="Upload files; they are ingested by a background job",
             responses=problems(400, 401, 403, 404, 413, 422))
async def upload(request: Request,
                 files: list[UploadFile] = File(..., description="One or more files (.md .txt .pdf .docx .html)."),
                 collection: str | None = Form(default=None, pattern=COLLECTION_PATTERN),
                 principal: Principal = Depends(authenticate),
                 services: Services = Depends(get_services)):
    from ingest.reader import SUPPORTED_SUFFIXES

    settings = services.settings
    collection = writable_collection(principal, collection, settings)
    if not files:
        raise Problem(422, "invalid-request", "Invalid request", "files: at least one file is required")
    if len(files) > settings.api_max_upload_files:
        raise Problem(413, "too-many-files", "Too many files",
                      f"{len(files)} files in one upload, over the limit of {settings.api_max_upload_files} "
                      f"(ATTEST_API_MAX_UPLOAD_FILES)")
    jobs = services.jobs
    job_id = jobs.new_job_id()
    staging = jobs.staging_dir(principal.tenant, collection, job_id)
    limit = int(settings.api_max_upload_mb * 1e6)
    described, seen = [], set()
    for index, upload in enumerate(files, start=1):
        original = upload.filename or ""
        name = sanitise_name(original) or f"upload-{index}"
        entry = {"name": name, "original_name": original[:300], "bytes": 0, "status": "pending", "reason": None,
                 "chunks": None}
        described.append(entry)
        suffix = Path(name).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            entry.update(status="rejected", reason=f"unsupported file type {suffix or '(none)'!r}: supported are "
                                                   f"{' '.join(SUPPORTED_SUFFIXES)}")
            continue
        if name in seen:
            entry.update(status="rejected", reason="another file in this upload has the same name")
            continue
        seen.add(name)
        target = staging / name
        size = await _save(upload, target, limit)
        entry["bytes"] = size
        if size > limit:
            target.unlink(missing_ok=True)
            entry.update(status="rejected", reason=f"the file is over the upload limit of "
                                                   f"{settings.api_max_upload_mb:g} MB (ATTEST_API_MAX_UPLOAD_MB)")
        elif size == 0:
            target.unlink(missing_ok=True)
            entry.update(status="rejected", reason="empty file")
    job = {"id": job_id, "tenant": principal.tenant, "collection": collection, "status": "queued",
           "created_at": utc_now(), "files": described, "summary": {}, "error": None}
    if not any(f["status"] == "pending" for f in described):
        job.update(status="failed", finished_at=utc_now(), error="no file of this upload can be ingested")
        await run_in_threadpool(services.records.save_job, job)
        services.metrics.jobs.labels("failed").inc()
    else:
        await run_in_threadpool(jobs.submit, job)
    status_url = f"/v1/jobs/{job_id}"
    accepted = JobAccepted(job_id=job_id, status=job["status"], collection=collection, files=described,
                           status_url=status_url)
    return JSONResponse(accepted.model_dump(mode="json"), status_code=202, headers={"Location": status_url})


async def _save(upload: UploadFile, target: Path, limit: int) -> int:
    """Copy an uploaded file to ``target``; stops (and reports the size so far) once over ``limit``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with open(target, "wb") as out:
        while True:
            block = await upload.read(1 << 20)
            if not block:
                break
            size += len(block)
            if size > limit:
                break
            out.write(block)
    await upload.close()
    return size


@router.get("/jobs/{job_id}", response_model=JobOut, summary="An ingest job: status and per-file results",
            responses=problems(401, 404))
async def job_status(job_id: str, principal: Principal = Depends(authenticate),
                     services: Services = Depends(get_services)) -> JobOut:
    job = await run_in_threadpool(services.records.job, job_id)
    if job is None or job["tenant"] != principal.tenant or not principal.can_read(job["collection"]):
        raise Problem(404, "job-not-found", "Job not found", f"no ingest job {job_id!r} for this API key")
    return JobOut(**{k: v for k, v in job.items() if k != "tenant"})


@router.get("/documents", response_model=DocumentList, summary="Documents in a collection",
            responses=problems(401, 404, 422))
async def list_documents(collection: str | None = Query(default=None, pattern=COLLECTION_PATTERN),
                         principal: Principal = Depends(authenticate),
                         services: Services = Depends(get_services)) -> DocumentList:
    collection = readable_collection(principal, collection, services.settings)

    def entries():
        with services.manifest_lock:
            return services.manifest.entries(collection)

    documents = [DocumentOut(doc_id=e.doc_id, title=e.title, tags=e.tags, chunks=len(e.chunk_ids),
                             file_hash=e.file_hash, ingested_at=e.ingested_at)
                 for e in await run_in_threadpool(entries)]
    return DocumentList(collection=collection, documents=documents)


@router.delete("/documents/{doc_id:path}", response_model=DocumentDeleted, summary="Delete a document",
               responses=problems(401, 403, 404, 409, 422))
async def delete_document(doc_id: str, collection: str | None = Query(default=None, pattern=COLLECTION_PATTERN),
                          principal: Principal = Depends(authenticate),
                          services: Services = Depends(get_services)) -> DocumentDeleted:
    collection = writable_collection(principal, collection, services.settings)

    def delete() -> int | None:
        with services.locks.hold(collection, timeout=5.0):
            with services.manifest_lock:
                entry = services.manifest.get(collection, doc_id)
            if entry is None:
                return None
            services.store.delete_doc_except(collection, doc_id, [])
            services.store.flush(collection)
            with services.manifest_lock:
                services.manifest.delete(collection, doc_id)
            source = Path(entry.source)
            if source.is_relative_to(services.jobs.uploads):
                source.unlink(missing_ok=True)  # or the next upload job would ingest it again
            return len(entry.chunk_ids)

    try:
        deleted = await run_in_threadpool(delete)
    except TimeoutError:
        raise Problem(409, "collection-busy", "Collection busy",
                      f"an ingest job is writing collection {collection!r}; retry when it has finished",
                      headers={"Retry-After": "10"}) from None
    if deleted is None:
        raise Problem(404, "document-not-found", "Document not found",
                      f"no document {doc_id!r} in collection {collection!r}")
    return DocumentDeleted(doc_id=doc_id, collection=collection, chunks_deleted=deleted)
