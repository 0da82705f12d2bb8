"""``GET /api/jobs``: ComfyUI's newer job list, derived from the queue and the history.

Layout from ``01_server_info/api_jobs_empty.json`` and ``10_history_after_runs/api_jobs.json``:
newest first; ``completed`` jobs carry ``preview_output`` (their first image, with ``nodeId`` and
``mediaType``), ``failed`` ones their ``execution_error`` payload, ``cancelled`` (interrupted)
ones neither. Pending and running prompts are listed as ``pending`` / ``in_progress``.
"""

from __future__ import annotations

from typing import Any

from comfyui_fake.records import QueueItem


def _stamp(messages: list[list[Any]], *events: str) -> int | None:
    return next((data.get("timestamp") for event, data in messages if event in events), None)


def _finished(prompt_id: str, entry: dict[str, Any]) -> dict[str, Any]:
    number, _, _, extra, _ = entry["prompt"]
    messages = entry["status"]["messages"]
    events = {event: data for event, data in messages}
    if entry["status"]["status_str"] == "success":
        status = "completed"
    else:
        status = "cancelled" if "execution_interrupted" in events else "failed"
    images = [
        {**image, "nodeId": nid, "mediaType": media}
        for nid, output in entry["outputs"].items()
        for media, items in output.items()
        if media == "images"
        for image in items
    ]
    job: dict[str, Any] = {
        "id": prompt_id,
        "status": status,
        "priority": number,
        "create_time": extra.get("create_time"),
        "execution_start_time": _stamp(messages, "execution_start"),
        "execution_end_time": _stamp(
            messages, "execution_success", "execution_error", "execution_interrupted"
        ),
    }
    if status == "failed" and "execution_error" in events:
        job["execution_error"] = events["execution_error"]
    job["outputs_count"] = sum(
        len(items) for output in entry["outputs"].values() for items in output.values()
    )
    job["previewable_outputs_count"] = len(images)
    if images:
        job["preview_output"] = images[0]
    return job


def _queued(item: QueueItem, status: str) -> dict[str, Any]:
    return {
        "id": item.prompt_id,
        "status": status,
        "priority": item.number,
        "create_time": item.extra_data.get("create_time"),
        "outputs_count": 0,
        "previewable_outputs_count": 0,
    }


def job_list(
    history: dict[str, dict[str, Any]],
    running: QueueItem | None,
    pending: list[QueueItem],
    *,
    offset: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    jobs = [_finished(pid, entry) for pid, entry in history.items()]
    jobs += [_queued(q, "pending") for q in pending]
    if running is not None:
        jobs.append(_queued(running, "in_progress"))
    jobs.sort(key=lambda j: (j["create_time"] or 0, j["priority"]), reverse=True)
    page = jobs[offset : None if limit is None else offset + limit]
    return {
        "jobs": page,
        "pagination": {
            "offset": offset,
            "limit": limit,
            "total": len(jobs),
            "has_more": offset + len(page) < len(jobs),
        },
    }
