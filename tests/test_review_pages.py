"""The reviewer page (/review) over real HTTP, and in a real headless Chromium.

One uvicorn on 127.0.0.1 serves the app over a real embedded store, the real claim verifier, and an
OpenAI-compatible model server on 127.0.0.1 (the real wire format). The model answers the warranty question
with a warranty the document does not give, so with ``"review": true`` the answer is queued for a person.
Both the document and the answer carry markup that would run if it were not escaped: a ``<script>`` that
sets ``window.__pwned`` and an ``<img onerror>`` that would.

HTTP tests: sign-in (bad key, non-reviewer key, CSRF), the cookie's flags, CSRF refusals on every kind of
POST, tenant isolation, escaping, edit/approve/reject through the forms, a revoked key ending its session,
the agreement page. Browser test (selenium + Debian's chromium/chromium-driver, installed by .ci/run): sign
in, open the item from the queue, edit and approve it with the keyboard, then the asker's poll returns the
edited answer; the item page is screenshotted (``ATTEST_REVIEW_SCREENSHOT=path`` keeps a copy, e.g. to
refresh docs/review-item.png).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from contextlib import closing

import httpx
import pytest

from tests.conftest import make_settings
from tests.test_api_support import ServerThread, openai_chat_reply

INJECT_ANSWER = "<script>window.__pwned = 'answer'</script>"
INJECT_DOC = "<script>window.__pwned = 'document'</script>"
INJECT_IMG = "<img src=x onerror=\"window.__pwned = 'img'\">"
FABRICATED = f"The K2 camera body has a 5-year warranty {INJECT_ANSWER}."
CORRECT = "The K2 camera body has a two-year limited warranty. [1]"
WARRANTY_Q = "How long is the warranty on the K2 camera body?"
DOC = (f"Warranty terms. The K2 camera body has a two-year limited warranty. {INJECT_DOC} It covers defects in "
       f"materials and workmanship. {INJECT_IMG} Accidental damage is not covered.\n")

KEYS = {
    "acme-asker": {"tenant": "acme", "collections": ["acme"], "roles": ["request_review"]},
    "globex-asker": {"tenant": "globex", "collections": ["globex"], "roles": ["request_review"]},
    "rev-acme": {"tenant": "ops", "roles": ["reviewer"], "review_tenants": ["acme"]},
    "rev-acme-2": {"tenant": "ops", "roles": ["reviewer"], "review_tenants": ["acme"]},
    "rev-globex": {"tenant": "ops", "roles": ["reviewer"], "review_tenants": ["globex"]},
}
ASKER = {"Authorization": "Bearer acme-asker"}
GLOBEX = {"Authorization": "Bearer globex-asker"}


def scripted_model():
    """An OpenAI-compatible chat endpoint answering every question with the fabricated warranty (streamed
    as server-sent events when asked to, as the provider does)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    async def chat(request):
        body = await request.json()
        return openai_chat_reply(body, json.dumps({"answerable": True, "short_answer": None,
                                                   "sentences": [{"text": FABRICATED, "passages": [1]}]}))

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def served(tmp_path_factory, encoder):
    from api.app import create_app
    from api.services import Services
    from ingest.manifest import Manifest
    from ingest.pipeline import Ingester
    from retrieval.store import EdgeStore

    with ServerThread(scripted_model()) as llm:
        settings = make_settings(tmp_path_factory.mktemp("review-pages"), api_keys=KEYS, cache_enabled=True,
                                 answer_providers=["openai"], openai_base_url=f"{llm.url}/v1",
                                 openai_api_key="sk-test", openai_model="gpt-4o-mini", grounding_judge="none",
                                 review_double_share=0.5)
        docs = tmp_path_factory.mktemp("review-pages-docs")
        (docs / "warranty.txt").write_text(DOC)
        store = EdgeStore(settings.edge_dir)
        manifest = Manifest(settings.manifest_path)
        for collection in ("acme", "globex"):
            Ingester(settings, store, manifest, encoder).run([docs], collection)
        manifest.close()
        services = Services.build(settings, store=store, encoder=encoder)
        with ServerThread(create_app(settings, services=services, configure_logs=False)) as server:
            with httpx.Client(base_url=server.url, timeout=300) as api:
                yield api, settings, server.url


_asked = 0


def ask_queued(api: httpx.Client, headers=ASKER, collection: str = "acme", double: bool = False) -> dict:
    """Ask the warranty question with review on; ``double``: a request id the 50% draw sends to two reviewers."""
    from api.review import _double

    global _asked
    while True:
        _asked += 1
        request_id = f"req-page-{_asked}"
        if _double(request_id, 0.5) == double:
            break
    response = api.post("/v1/query", json={"question": WARRANTY_Q, "review": True, "cache": False,
                                           "collection": collection},
                        headers={**headers, "X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["decision"] == "queued_for_review", [a["detail"] for a in body["attempts"]]
    return body


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(url: str, key: str) -> tuple[httpx.Client, str]:
    """A browser-like client signed in with ``key`` (cookies kept), and the session's CSRF token."""
    client = httpx.Client(base_url=url, timeout=300)
    page = client.get("/review/sign-in")
    signed = client.post("/review/sign-in", data={"key": key, "csrf": csrf_of(page.text), "next": "/review"})
    assert signed.status_code == 303 and signed.headers["location"] == "/review", (signed.status_code, signed.text)
    queue = client.get("/review")
    assert queue.status_code == 200
    return client, csrf_of(queue.text)


def item_status(api: httpx.Client, item_id: str, reviewer: str) -> str:
    return api.get(f"/v1/review/items/{item_id}", headers={"Authorization": f"Bearer {reviewer}"}).json()["status"]


# ---- sign-in -------------------------------------------------------------------------------------------
def test_pages_need_a_reviewer_sign_in(served):
    api, _, url = served
    with httpx.Client(base_url=url) as anon:
        for path in ("/review", "/review/agreement", "/review/items/rev_x"):
            response = anon.get(path)
            assert response.status_code == 303 and response.headers["location"].startswith("/review/sign-in?next=")
        page = anon.get("/review/sign-in")
        assert page.status_code == 200 and 'name="key"' in page.text
        cookie = page.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/review" in cookie
        token = csrf_of(page.text)

        bad = anon.post("/review/sign-in", data={"key": "nope", "csrf": token})
        assert bad.status_code == 401 and "not valid" in bad.text and "set-cookie" not in bad.headers
        asker = anon.post("/review/sign-in", data={"key": "acme-asker", "csrf": token})
        assert asker.status_code == 403 and "not a reviewer key" in asker.text
        empty = anon.post("/review/sign-in", data={"key": " ", "csrf": token})
        assert empty.status_code == 400 and "Enter your reviewer API key" in empty.text
        still_out = anon.get("/review")
        assert still_out.status_code == 303

        # Without the form's token (or with another session's) the sign-in itself is refused.
        assert anon.post("/review/sign-in", data={"key": "rev-acme"}).status_code == 403
        assert anon.post("/review/sign-in", data={"key": "rev-acme", "csrf": "forged"}).status_code == 403
    with httpx.Client(base_url=url) as fresh:  # no cookie at all: the token alone is not enough
        assert fresh.post("/review/sign-in", data={"key": "rev-acme", "csrf": token}).status_code == 403

    client, csrf = sign_in(url, "rev-acme")
    with closing(client):
        assert csrf != token  # a new token with the signed-in session
        page = client.get("/review")
        assert "rev-acme" not in page.text  # the key never appears; its id does
        assert 'Content-Security-Policy' in page.headers and "script-src 'self'" in page.headers[
            "content-security-policy"]
        out = client.post("/review/sign-out", data={"csrf": csrf})
        assert out.status_code == 303 and 'attest_review=""' in out.headers["set-cookie"]
        assert client.get("/review").status_code == 303


def test_a_tampered_or_revoked_session_is_signed_out(served):
    from api.auth import add_key, revoke_key

    api, settings, url = served
    key = add_key(settings.database_path, "ops", [], roles=["reviewer"], review_tenants=["acme"])
    client, _ = sign_in(url, key)
    with closing(client):
        cookie = client.cookies.get("attest_review")
        client.cookies.set("attest_review", cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"),
                           path="/review")
        assert client.get("/review").status_code == 303
        client.cookies.set("attest_review", cookie, path="/review")
        assert client.get("/review").status_code == 200
        revoke_key(settings.database_path, key)
        gone = client.get("/review")
        assert gone.status_code == 303 and "note=expired" in gone.headers["location"]


# ---- CSRF and tenants ----------------------------------------------------------------------------------
def test_every_post_needs_the_csrf_token(served):
    api, _, url = served
    item_id = ask_queued(api)["review"]["item_id"]
    client, csrf = sign_in(url, "rev-acme")
    with closing(client):
        for action, data in (("claim", {}), ("approve", {}), ("reject", {"reason": "wrong"}),
                             ("edit", {"text": CORRECT}), ("release", {})):
            for token in (None, "forged", csrf[:-1]):
                form = {**data, **({"csrf": token} if token else {})}
                refused = client.post(f"/review/items/{item_id}/{action}", data=form)
                assert refused.status_code == 403 and "security token" in refused.text, (action, token)
        assert client.post("/review/sign-out", data={}).status_code == 403
        assert item_status(api, item_id, "rev-acme") == "pending"
        audit = api.get(f"/v1/review/items/{item_id}/audit", headers={"Authorization": "Bearer rev-acme"}).json()
        assert [e["action"] for e in audit["entries"]] == ["queued"]
        # Another reviewer's token does not work with this session either.
        other, other_csrf = sign_in(url, "rev-acme-2")
        with closing(other):
            assert client.post(f"/review/items/{item_id}/claim", data={"csrf": other_csrf}).status_code == 403


def test_a_reviewer_sees_and_decides_only_their_tenants_items(served):
    api, _, url = served
    acme_id = ask_queued(api)["review"]["item_id"]
    globex_id = ask_queued(api, headers=GLOBEX, collection="globex")["review"]["item_id"]
    client, csrf = sign_in(url, "rev-acme")
    with closing(client):
        for query in ("", "?status=all", "?tenant=globex", "?status=all&collection=globex"):
            page = client.get("/review" + query).text
            assert globex_id not in page
        assert acme_id in client.get("/review").text
        missing = client.get(f"/review/items/{globex_id}")
        assert missing.status_code == 404 and "no review item" in missing.text.lower()
        for action, data in (("claim", {}), ("approve", {}), ("reject", {"reason": "x"}), ("edit", {"text": "x"})):
            response = client.post(f"/review/items/{globex_id}/{action}", data={**data, "csrf": csrf})
            assert response.status_code == 404, (action, response.status_code)
        assert item_status(api, globex_id, "rev-globex") == "pending"
    globex, _ = sign_in(url, "rev-globex")
    with closing(globex):
        assert globex.get(f"/review/items/{globex_id}").status_code == 200
        assert globex.get(f"/review/items/{acme_id}").status_code == 404


def test_bad_filters_are_explained(served):
    _, _, url = served
    client, _ = sign_in(url, "rev-acme")
    with closing(client):
        page = client.get("/review", params={"status": "lost", "risk": "huge", "offset": "-3"})
        assert page.status_code == 422
        assert "status must be one of" in page.text and "risk must be one of" in page.text
        assert "offset must be a whole number" in page.text


# ---- what the item page shows --------------------------------------------------------------------------
def test_the_item_page_says_which_claims_failed_and_why_and_marks_the_evidence(served):
    api, _, url = served
    asked = ask_queued(api)
    item_id = asked["review"]["item_id"]
    client, _ = sign_in(url, "rev-acme")
    with closing(client):
        page = client.get(f"/review/items/{item_id}")
        assert page.status_code == 200
        html = page.text
        assert "1 of 1 claim failed the checks" in html
        assert "States a number no source contains: “5”" in html  # the number veto, in words
        assert re.search(r'<mark class="m-bad">5</mark>', html)  # the missing number marked in the claim
        assert re.search(r"score <b>0\.\d\d</b> / needs 0\.\d\d", html)
        # The evidence sentence is marked where it lies in the source.
        assert re.search(r'<mark class="m-ev">[^<]*two-year limited warranty\.</mark>', html)
        assert re.search(r'<mark class="m-bad" title="evidence for failed claim 1">[^<]*two-year', html)
        assert "warranty.txt" in html and 'data-key="a"' in html and 'data-key="e"' in html


def test_document_and_answer_markup_is_shown_as_text_never_run(served):
    api, _, url = served
    item_id = ask_queued(api)["review"]["item_id"]
    client, _ = sign_in(url, "rev-acme")
    with closing(client):
        html = client.get(f"/review/items/{item_id}").text
        for injected in (INJECT_ANSWER, INJECT_DOC, INJECT_IMG):
            assert injected not in html
        assert "&lt;script&gt;window.__pwned = &#39;answer&#39;&lt;/script&gt;" in html
        assert "&lt;script&gt;window.__pwned = &#39;document&#39;&lt;/script&gt;" in html
        assert "&lt;img src=x onerror=&#34;window.__pwned = &#39;img&#39;&#34;&gt;" in html
        assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/review/static/review.js" defer>']
        assert "<img" not in html
        # The queue shows the question only; it is escaped there too (and in the edit box, the draft).
        assert 'onerror="' not in client.get("/review", params={"status": "all"}).text


def test_edit_reject_and_approve_through_the_forms(served):
    api, _, url = served
    edited = ask_queued(api)
    rejected = ask_queued(api)
    client, csrf = sign_in(url, "rev-acme")
    with closing(client):
        item_id = edited["review"]["item_id"]
        empty = client.post(f"/review/items/{item_id}/edit", data={"csrf": csrf, "text": "   "})
        assert empty.status_code == 422 and "your text is empty" in empty.text
        failing = client.post(f"/review/items/{item_id}/edit", data={"csrf": csrf, "text": "It lasts 9 years. [1]"},
                              follow_redirects=True)
        assert failing.status_code == 200 and "Your edit, verified" in failing.text
        assert "The checks fail your text" in failing.text and "“9”" in failing.text
        good = client.post(f"/review/items/{item_id}/edit", data={"csrf": csrf, "text": CORRECT},
                           follow_redirects=True)
        assert "The checks pass your text" in good.text and "Approve your edit" in good.text
        approved = client.post(f"/review/items/{item_id}/approve", data={"csrf": csrf}, follow_redirects=True)
        assert approved.status_code == 200 and "Decided: edited" in approved.text
        again = client.post(f"/review/items/{item_id}/approve", data={"csrf": csrf})
        assert again.status_code == 409 and "already decided" in again.text
        polled = api.get(edited["review"]["poll_url"], headers=ASKER).json()
        assert polled["decision"] == "served" and polled["answer"] == CORRECT

        item_id = rejected["review"]["item_id"]
        blank = client.post(f"/review/items/{item_id}/reject", data={"csrf": csrf, "reason": ""})
        assert blank.status_code == 422 and "the reason is empty" in blank.text
        done = client.post(f"/review/items/{item_id}/reject", data={"csrf": csrf, "reason": "says 5 years",
                                                                     "unanswerable": "on"}, follow_redirects=True)
        assert "Decided: rejected" in done.text and "says 5 years" in done.text
        polled = api.get(rejected["review"]["poll_url"], headers=ASKER).json()
        assert polled["decision"] == "rejected"
        trail = api.get(f"/v1/review/items/{item_id}/audit", headers={"Authorization": "Bearer rev-acme"}).json()
        assert [e["action"] for e in trail["entries"]] == ["queued", "claimed", "rejected"]


def test_a_claimed_item_shows_who_holds_it_and_refuses_a_second_reviewer(served):
    api, _, url = served
    item_id = ask_queued(api)["review"]["item_id"]
    first, csrf1 = sign_in(url, "rev-acme")
    second, csrf2 = sign_in(url, "rev-acme-2")
    with closing(first), closing(second):
        assert first.post(f"/review/items/{item_id}/claim", data={"csrf": csrf1}).status_code == 303
        assert "You hold this item" in first.get(f"/review/items/{item_id}").text
        page = second.get(f"/review/items/{item_id}").text
        assert "Claimed by key_" in page and 'id="approve"' not in page
        refused = second.post(f"/review/items/{item_id}/approve", data={"csrf": csrf2})
        assert refused.status_code == 409 and "claimed by" in refused.text
        assert first.post(f"/review/items/{item_id}/release", data={"csrf": csrf1}).status_code == 303
        assert item_status(api, item_id, "rev-acme") == "pending"


def test_two_reviewers_decide_independently_and_the_agreement_page_reports_it(served):
    api, _, url = served
    agreed = ask_queued(api, double=True)["review"]["item_id"]
    split = ask_queued(api, double=True)["review"]["item_id"]
    first, csrf1 = sign_in(url, "rev-acme")
    second, csrf2 = sign_in(url, "rev-acme-2")
    with closing(first), closing(second):
        assert first.post(f"/review/items/{agreed}/approve", data={"csrf": csrf1}).status_code == 303
        waiting = first.get(f"/review/items/{agreed}").text
        assert "You already reviewed this item" in waiting and 'id="approve"' not in waiting
        page = second.get(f"/review/items/{agreed}").text
        assert "two reviews" in page and 'id="approve"' in page  # the second review is open to someone else
        assert second.post(f"/review/items/{agreed}/approve", data={"csrf": csrf2}).status_code == 303
        assert item_status(api, agreed, "rev-acme") == "approved"

        first.post(f"/review/items/{split}/approve", data={"csrf": csrf1})
        second.post(f"/review/items/{split}/reject", data={"csrf": csrf2, "reason": "5 years is wrong"})
        assert item_status(api, split, "rev-acme") == "disputed"

        report = first.get("/review/agreement")
        assert report.status_code == 200
        table = report.text[report.text.index('id="agreement"'):]
        rows = {m.group(1): [c.strip() for c in re.findall(r'<td class="num">([^<]*)</td>', m.group(2))]
                for m in re.finditer(r'<th scope="row">([^<]+)</th>(.*?)</tr>', table, re.S)}
        assert rows["All items"] == ["2", "1", "50%", "50%"]
        assert rows["tenant acme"] == ["2", "1", "50%", "50%"] and rows["kind failed_check"][0] == "2"


def test_static_files_come_from_the_package(served):
    _, _, url = served
    with httpx.Client(base_url=url) as anon:
        js = anon.get("/review/static/review.js")
        css = anon.get("/review/static/review.css")
        assert js.status_code == 200 and "javascript" in js.headers["content-type"] and "keydown" in js.text
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert anon.get("/review/static/..%2Fapp.py").status_code == 404
        assert anon.get("/review/static/nothing.js").status_code == 404


def test_claim_views_place_evidence_by_offsets_and_survive_spans_they_cannot_place():
    """Pure view logic (no server): offsets that hold their sentence are used; stale offsets fall back to the
    sentence's text; a span whose passage is not among the sources is still shown, unplaced."""
    from api.review_view import claim_view, segments
    from api.routes.review_pages import templates

    text = "Intro. The warranty lasts two years. Outro."
    sources = [{"chunk_id": "c1", "doc_id": "w.txt", "title": "W", "text": text, "score": 1.0}]
    sentence = "The warranty lasts two years."
    start = text.index(sentence)
    claim = {"text": "The warranty lasts 3 years.", "sentence": 0, "verdict": "unsupported", "score": 0.1,
             "threshold": 0.5, "vetoes": ["number_absent_from_sources"], "supporting": [],
             "evidence_spans": [
                 {"chunk_id": "c1", "passage": 1, "text": sentence, "similarity": 0.9, "start": start,
                  "end": start + len(sentence)},
                 {"chunk_id": "c1", "passage": 1, "text": sentence, "similarity": 0.8, "start": 0, "end": 5},
                 {"chunk_id": "gone", "passage": 7, "text": "<b>elsewhere</b>", "similarity": 0.1}]}
    view = claim_view(1, claim, sources, "low")
    assert view["failed"] and view["headline"] == "States a number no source contains: “3”."
    assert [s["text"] for s in view["segments"] if s["cls"] == "bad"] == ["3"]
    placed, fallback, unplaced = view["evidence"]
    for shown in (placed, fallback):
        assert [s["text"] for s in shown["segments"] if s["cls"] == "evidence"] == [sentence]
    assert not unplaced["located"] and unplaced["segments"][0]["text"] == "<b>elsewhere</b>"
    html = str(templates().env.get_template("review/_macros.html").module.claim_card(view))
    assert "&lt;b&gt;elsewhere&lt;/b&gt;" in html and "<b>elsewhere" not in html
    assert segments("abcdef", [(1, 4, "good", 1), (2, 3, "bad", 2)]) == [
        {"text": "a", "cls": "", "claims": []}, {"text": "b", "cls": "good", "claims": [1]},
        {"text": "c", "cls": "bad", "claims": [1, 2]}, {"text": "d", "cls": "good", "claims": [1]},
        {"text": "ef", "cls": "", "claims": []}]


# ---- a real browser ------------------------------------------------------------------------------------
def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def chrome(tmp_path):
    found = _chromium()
    if found is None:
        pytest.skip("no Chromium here: install Debian's chromium and chromium-driver (.ci/run does: "
                    "apt-get install -y chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a dev extra: pip install -e '.[dev]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'chromium-profile'}",
                 "--window-size=1280,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_in_chromium_a_reviewer_signs_in_edits_and_approves_and_the_asker_gets_the_edit(served, chrome, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import WebDriverWait

    api, _, url = served
    asked = ask_queued(api)
    item_id = asked["review"]["item_id"]
    wait = WebDriverWait(chrome, 60)

    chrome.get(f"{url}/review")
    wait.until(until.presence_of_element_located((By.ID, "key"))).send_keys("rev-acme", Keys.ENTER)
    wait.until(until.presence_of_element_located((By.ID, "queue")))
    link = chrome.find_element(By.CSS_SELECTOR, f'a.item-link[href="/review/items/{item_id}"]')
    link.click()
    wait.until(until.presence_of_element_located((By.ID, "summary")))

    # The injected markup is on the page as text and never ran.
    assert chrome.execute_script("return typeof window.__pwned") == "undefined"
    body = chrome.find_element(By.TAG_NAME, "body").text
    assert INJECT_ANSWER in body and INJECT_DOC in body and INJECT_IMG in body
    assert chrome.execute_script("return Array.from(document.scripts).map(s => s.src)") == [
        f"{url}/review/static/review.js"]
    assert chrome.execute_script("return document.images.length") == 0

    # A reviewer sees at a glance which claim failed and why.
    summary = chrome.find_element(By.ID, "summary").text
    assert "1 of 1 claim failed the checks" in summary and "States a number no source contains: “5”" in summary
    claim = chrome.find_element(By.ID, "claim-1")
    assert "FAILED" in claim.text and claim.value_of_css_property("border-left-color") == "rgba(180, 35, 24, 1)"
    shot = tmp_path / "review-item.png"
    chrome.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ATTEST_REVIEW_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["ATTEST_REVIEW_SCREENSHOT"])

    # Keyboard only: e (edit box), type, Ctrl+Enter (verify); a (approve button), Enter.
    page = chrome.find_element(By.TAG_NAME, "body")
    page.send_keys("e")
    editor = chrome.switch_to.active_element
    assert editor.get_attribute("id") == "edit"
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.DELETE)
    editor.send_keys(CORRECT)
    editor.send_keys(Keys.CONTROL, Keys.ENTER)
    verdict = wait.until(until.presence_of_element_located((By.CSS_SELECTOR, "#your-edit .edit-verdict")))
    assert verdict.text.startswith("served") and "would be served as written" in verdict.text
    assert chrome.find_element(By.ID, "approve").text.startswith("Approve your edit")

    chrome.find_element(By.TAG_NAME, "body").send_keys("a")
    approve = chrome.switch_to.active_element
    assert approve.get_attribute("id") == "approve"
    approve.send_keys(Keys.ENTER)
    wait.until(until.text_to_be_present_in_element((By.ID, "item-status"), "edited"))
    assert chrome.find_element(By.ID, "final-text").text == CORRECT

    polled = api.get(asked["review"]["poll_url"], headers=ASKER).json()
    assert polled["decision"] == "served" and polled["answer"] == CORRECT
    assert polled["review"]["status"] == "edited"
