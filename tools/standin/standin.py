#!/usr/bin/python3
"""standin.py - local stand-in for the SendGrid v3 Mail Send and Twilio Messages APIs.

Listens on $PHR_STANDIN_HOST (default 127.0.0.1; 0.0.0.0 in the compose test's container)
port $PHR_STANDIN_PORT (default 9199); SIGTERM ends it with status 0. Checks credentials and
request shape as the real APIs do, answers with the real response shapes, sends real signed
status webhooks back to the service and lists what it accepted.

  POST /v3/mail/send                                   SendGrid (Bearer = secret sendgrid_api_key)
  POST /2010-04-01/Accounts/{sid}/Messages.json        Twilio (Basic sid:twilio_auth_token)
  GET  /v3/messages?limit=N&query=Q                   SendGrid Email Activity (Bearer): Q is
                        clauses field="value" joined by AND; fields msg_id, to_email,
                        from_email, subject, status, unique_args['name'] (custom_args)
  GET  /2010-04-01/Accounts/{sid}/Messages/{Sid}.json  Twilio fetch (current status)
  GET  /2010-04-01/Accounts/{sid}/Messages.json        Twilio list, newest first; filters To,
                        From, DateSent / DateSent< / DateSent> (on, on or before, on or after;
                        YYYY-MM-DD or ISO 8601, GMT; by date_sent, null until sent),
                        PageSize (default 50), Page
  GET  /__messages      accepted messages, newest first: id, provider, to, from, subject,
                        text, html, received_at, custom_args, categories, tracking_settings,
                        status, webhooks (each sent webhook and the answer's status code)
  DELETE /__messages    forget messages, request log and fault counters
  GET  /__requests      every API request (newest first): provider, to, status code
  POST /__webhook       test helper: sign and post a webhook, answer {"status", "body"}:
                        {"provider": "sendgrid", "events": [...], "forge"?: bool,
                         "timestamp"?: int} or
                        {"provider": "twilio", "params": {...}, "url"?: str, "forge"?: bool}
  GET  /__health        200

Fault injection by recipient tag in the e-mail local part (user+TAG@example.jp):
  +fail500[xN]   500 (the first N requests for that address, then success; always without xN)
  +fail429[xN]   429 with Retry-After: $PHR_STANDIN_RETRY_AFTER (default 1)
  +fail400       400 (permanent, real error shape)
  +hang[xN]      never answers (holds the connection $PHR_STANDIN_HANG_S, default 120 s)
  +bounce        accepted (202), then a signed "bounce" event instead of "delivered"
  +slowMS        accepted after MS milliseconds (e.g. +slow150@: a provider taking 150 ms)
SMS (To must be E.164, so by number):
  +15005550001 400 code 21211   +15005550004 400 code 21610   +15005550009 400 code 21614
  +150055505NN 500 the first NN times (00 = always)   +150055542NN 429 likewise
  +15005550888 hangs             +15005550777 accepted, then "undelivered" (ErrorCode 30003)

Webhooks go to $PHR_STANDIN_WEBHOOK_BASE (default https://127.0.0.1:$PHR_GATEWAY_PORT,
certificate not verified) after $PHR_STANDIN_WEBHOOK_DELAY_MS (default 200):
  SendGrid: POST /api/v1/webhooks/sendgrid, JSON array of "processed" then "delivered" (or
    "bounce") events with custom_args flattened in, signed ECDSA P-256/SHA-256 over
    timestamp + body with secret sendgrid_webhook.pem (X-Twilio-Email-Event-Webhook-Signature,
    X-Twilio-Email-Event-Webhook-Timestamp).
  Twilio: form POSTs "sent" then "delivered" (or "undelivered") to the message's
    StatusCallback (its path on the webhook base; default /api/v1/webhooks/twilio), with
    X-Twilio-Signature = base64(HMAC-SHA1(auth token, StatusCallback URL + sorted k+v)).
"""

import base64
import datetime
import email.utils
import hashlib
import hmac
import json
import os
import queue
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

HOST = os.environ.get("PHR_STANDIN_HOST", "127.0.0.1")
PORT = int(os.environ.get("PHR_STANDIN_PORT", "9199"))
SECRETS_DIR = os.environ.get("PHR_SECRETS_DIR", "var/secrets")
WEBHOOK_BASE = os.environ.get(
    "PHR_STANDIN_WEBHOOK_BASE",
    "https://127.0.0.1:%s" % os.environ.get("PHR_GATEWAY_PORT", "8443"),
).rstrip("/")
WEBHOOK_DELAY = int(os.environ.get("PHR_STANDIN_WEBHOOK_DELAY_MS", "200")) / 1000.0
HANG_S = float(os.environ.get("PHR_STANDIN_HANG_S", "120"))
RETRY_AFTER = os.environ.get("PHR_STANDIN_RETRY_AFTER", "1")
MAX_BODY = 30 * 1024 * 1024
SG_HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"

WEBHOOK_WORKERS = 4
LOCK = threading.Lock()
JOBS = queue.Queue()  # (due time, function): webhooks, run by WEBHOOK_WORKERS threads
SG_KEY = []  # the loaded sendgrid_webhook.pem
MESSAGES = []  # newest last; served reversed
REQUESTS = []
FAULTS = {}  # (tag, address) -> times already failed
BY_SID = {}

TAG_RE = re.compile(r"\+(fail500|fail429|fail400|hang|bounce)(?:x(\d+))?(?=[+@]|$)")
E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
SID_RE = re.compile(r"^AC[0-9a-fA-F]{32}$")
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def log(msg):
    sys.stderr.write("%s standin: %s\n" % (now_rfc3339(), msg))
    sys.stderr.flush()


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def secret(name):
    with open(os.path.join(SECRETS_DIR, name), "rb") as f:
        return f.read().strip()


def unverified_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def post(url, body, headers):
    """POST; returns (status, body text). Never raises."""
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10, context=unverified_ctx()) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")
    except Exception as e:  # connection refused, timeout, TLS
        return 0, str(e)


# ---- fault injection -----------------------------------------------------------------


def fault_for(addresses):
    """First fault that applies to any address: (tag, address) or None; counts it."""
    with LOCK:
        for addr in addresses:
            tags = []
            if "@" in addr:
                tags = TAG_RE.findall(addr.split("@", 1)[0])
            else:
                tags = sms_tags(addr)
            for tag, n in tags:
                if tag == "bounce":
                    continue
                key = (tag, addr.lower())
                used = FAULTS.get(key, 0)
                if n and used >= int(n):
                    continue
                FAULTS[key] = used + 1
                return tag
    return None


def sms_tags(to):
    fixed = {
        "+15005550001": ("fail400", "21211"),
        "+15005550004": ("fail400", "21610"),
        "+15005550009": ("fail400", "21614"),
        "+15005550888": ("hang", ""),
    }
    if to in fixed:
        return [fixed[to]]
    m = re.match(r"^\+150055505(\d\d)$", to)
    if m:
        return [("fail500", str(int(m.group(1))) if int(m.group(1)) else "")]
    m = re.match(r"^\+150055542(\d\d)$", to)
    if m:
        return [("fail429", str(int(m.group(1))) if int(m.group(1)) else "")]
    return []


SLOW_RE = re.compile(r"\+slow(\d{1,6})(?=[+@]|$)")


def slow(addresses):
    """Sleeps for the largest +slowMS tag of |addresses| (e-mail local parts)."""
    ms = 0
    for addr in addresses:
        if "@" in addr:
            for v in SLOW_RE.findall(addr.split("@", 1)[0]):
                ms = max(ms, int(v))
    if ms:
        time.sleep(ms / 1000.0)


def bounces(addr):
    if "@" in addr:
        return any(t == "bounce" for t, _ in TAG_RE.findall(addr.split("@", 1)[0]))
    return addr == "+15005550777"


def hang():
    time.sleep(HANG_S)


def schedule(fn):
    JOBS.put((time.time() + WEBHOOK_DELAY, fn))


def job_worker():
    while True:
        due, fn = JOBS.get()
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        try:
            fn()
        except Exception as e:  # keep the worker alive whatever a job does
            log("webhook job failed: %r" % e)


# ---- SendGrid ------------------------------------------------------------------------


def sg_error(message, field, status=400):
    err = {"message": message, "field": field, "help": None}
    if field:
        err["help"] = SG_HELP + "#message." + re.sub(r"\.\d+", "", field)
    return status, {"errors": [err]}


def sg_validate(m):
    """None when valid, else (status, body)."""
    if not isinstance(m, dict):
        return sg_error("Bad Request", None)
    pers = m.get("personalizations")
    if not isinstance(pers, list) or not pers:
        return sg_error(
            "The personalizations field is required and must have at least one "
            "personalization.",
            "personalizations",
        )
    if len(pers) > 1000:
        return sg_error(
            "The personalization block is limited to 1000 personalizations per API request.",
            "personalizations",
        )
    total = 0
    has_top_subject = isinstance(m.get("subject"), str) and m["subject"] != ""
    for i, p in enumerate(pers):
        if not isinstance(p, dict):
            return sg_error("Bad Request", "personalizations.%d" % i)
        to = p.get("to")
        if not isinstance(to, list) or not to:
            return sg_error(
                "The to array is required for all personalization objects, and must have "
                "at least one email object with a valid email address.",
                "personalizations.%d.to" % i,
            )
        for kind in ("to", "cc", "bcc"):
            lst = p.get(kind) or []
            if not isinstance(lst, list):
                return sg_error("Bad Request", "personalizations.%d.%s" % (i, kind))
            for j, r in enumerate(lst):
                addr = r.get("email") if isinstance(r, dict) else None
                if not isinstance(addr, str) or "@" not in addr or addr.startswith("@"):
                    return sg_error(
                        "Does not contain a valid address.",
                        "personalizations.%d.%s.%d.email" % (i, kind, j),
                    )
                name = r.get("name")
                if isinstance(name, str) and (";" in name or "," in name):
                    return sg_error(
                        "The name cannot contain ';' or ','.",
                        "personalizations.%d.%s.%d.name" % (i, kind, j),
                    )
                total += 1
        if not has_top_subject and not m.get("template_id"):
            s = p.get("subject")
            if not isinstance(s, str) or s == "":
                return sg_error(
                    "The subject is required. You can get around this requirement if you use "
                    "a template with a subject defined or if every personalization has a "
                    "subject defined.",
                    "subject",
                )
        sa = p.get("send_at")
        if sa is not None and (not isinstance(sa, int) or sa > time.time() + 72 * 3600):
            return sg_error(
                "You may not send mail more than 72 hours in advance.",
                "personalizations.%d.send_at" % i,
            )
        ca = p.get("custom_args")
        if ca is not None and (not isinstance(ca, dict) or len(json.dumps(ca)) >= 10000):
            return sg_error("Bad Request", "personalizations.%d.custom_args" % i)
    if total > 1000:
        return sg_error(
            "There is a limit of 1000 total recipients (to + cc + bcc) per request.",
            "personalizations",
        )
    frm = m.get("from")
    if not isinstance(frm, dict) or not isinstance(frm.get("email"), str) or "@" not in frm.get(
        "email", ""
    ):
        return sg_error(
            "The from object must be provided for every email send. It is an object that "
            "requires the email parameter, but may also contain a name parameter.",
            "from.email",
        )
    if "subject" in m and not has_top_subject:
        return sg_error("The subject must be a non-empty string.", "subject")
    content = m.get("content")
    if not m.get("template_id"):
        if not isinstance(content, list) or not content:
            return sg_error(
                "Unless a valid template_id is provided, the content parameter is required. "
                "There must be at least one defined content block.",
                "content",
            )
        for k, c in enumerate(content):
            if (
                not isinstance(c, dict)
                or not isinstance(c.get("type"), str)
                or not c["type"]
                or not isinstance(c.get("value"), str)
                or not c["value"]
            ):
                return sg_error(
                    "The content value must be a string at least one character in length.",
                    "content.%d.value" % k,
                )
    cats = m.get("categories")
    if cats is not None and (not isinstance(cats, list) or len(cats) > 10):
        return sg_error("Too many categories: at most 10 are allowed.", "categories")
    return None


def sg_send(handler, raw):
    auth = handler.headers.get("Authorization", "")
    try:
        key = secret("sendgrid_api_key").decode()
    except OSError:
        key = None
    if not key or not hmac.compare_digest(auth.encode(), ("Bearer " + key).encode()):
        return 401, {"errors": [{"message": "authorization required", "field": None,
                                 "help": None}]}, {}
    if len(raw) > MAX_BODY:
        return 413, {"errors": [{"message": "content too large", "field": None,
                                 "help": None}]}, {}
    try:
        m = json.loads(raw)
    except ValueError:
        return 400, {"errors": [{"message": "Bad Request", "field": None, "help": None}]}, {}
    bad = sg_validate(m)
    if bad:
        return bad[0], bad[1], {}
    addrs = [r["email"] for p in m["personalizations"] for r in p["to"]]
    fault = fault_for(addrs)
    log_request("sendgrid", addrs, fault)
    if fault == "hang":
        hang()
        return None, None, {}
    if fault == "fail500":
        return 500, {"errors": [{"message": "internal server error", "field": None,
                                 "help": None}]}, {}
    if fault == "fail429":
        return 429, {"errors": [{"message": "too many requests", "field": None,
                                 "help": None}]}, {"Retry-After": RETRY_AFTER}
    if fault == "fail400":
        return sg_error("Does not contain a valid address.", "personalizations.0.to.0.email") + (
            {},
        )
    slow(addrs)
    sandbox = ((m.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable")
    if sandbox:
        return 200, None, {}
    msg_id = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()[:22]
    text = html = None
    for c in m.get("content") or []:
        if c.get("type") == "text/plain" and text is None:
            text = c.get("value")
        elif c.get("type") == "text/html" and html is None:
            html = c.get("value")
    recs = []
    for p in m["personalizations"]:
        args = dict(m.get("custom_args") or {}) if isinstance(m.get("custom_args"), dict) else {}
        args.update(p.get("custom_args") or {})
        for r in p["to"]:
            rec = {
                "id": msg_id,
                "msg_id": "%s.filterdrecv-standin-%d-1-0" % (msg_id, len(recs)),
                "provider": "sendgrid",
                "to": r["email"],
                "from": m["from"]["email"],
                "subject": p.get("subject") or m.get("subject"),
                "text": text,
                "html": html,
                "received_at": now_rfc3339(),
                "custom_args": args,
                "categories": m.get("categories"),
                "tracking_settings": m.get("tracking_settings"),
                "status": "accepted",
                "webhooks": [],
            }
            recs.append(rec)
    with LOCK:
        MESSAGES.extend(recs)
    for rec in recs:
        schedule(lambda rec=rec: sg_events(rec))
    return 202, None, {"X-Message-Id": msg_id}


SG_QUERY_RE = re.compile(
    r"""\s*(msg_id|to_email|from_email|subject|status|unique_args\['([^']+)'\])\s*=\s*"([^"]*)"\s*"""
)
SG_STATUS = {"accepted": "processing", "delivered": "delivered", "bounced": "not_delivered"}


def sg_activity_item(rec):
    return {
        "from_email": rec["from"],
        "msg_id": rec["msg_id"],
        "subject": rec["subject"],
        "to_email": rec["to"],
        "status": SG_STATUS.get(rec["status"], "processing"),
        "opens_count": 0,
        "clicks_count": 0,
        "last_event_time": rec["received_at"][:19] + "Z",
    }


def sg_activity(handler, qs):
    """GET /v3/messages (Email Activity): (status, body)."""
    auth = handler.headers.get("Authorization", "")
    try:
        key = secret("sendgrid_api_key").decode()
    except OSError:
        key = None
    if not key or not hmac.compare_digest(auth.encode(), ("Bearer " + key).encode()):
        return 401, {"errors": [{"message": "authorization required", "field": None,
                                 "help": None}]}
    limit = (qs.get("limit") or [""])[0]
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        return sg_error("limit must be an integer between 1 and 1000", "limit")
    clauses = []
    query = (qs.get("query") or [""])[0]
    for part in re.split(r"\s+AND\s+", query) if query.strip() else []:
        m = SG_QUERY_RE.fullmatch(part)
        if not m:
            return sg_error("invalid query", "query")
        clauses.append((m.group(1), m.group(2), m.group(3)))

    def matches(rec):
        for field, arg, value in clauses:
            if arg is not None:
                have = (rec.get("custom_args") or {}).get(arg)
            else:
                have = sg_activity_item(rec)[field]
            if have is None or str(have).lower() != value.lower():
                return False
        return True

    with LOCK:
        out = [sg_activity_item(r) for r in reversed(MESSAGES)
               if r["provider"] == "sendgrid" and matches(r)]
    return 200, {"messages": out[: int(limit)]}


def sg_sign(ts, body, forge=False):
    if not SG_KEY:
        SG_KEY.append(serialization.load_pem_private_key(secret("sendgrid_webhook.pem"),
                                                         password=None))
    key = SG_KEY[0]
    if forge:
        key = ec.generate_private_key(ec.SECP256R1())
    sig = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(sig).decode()


def sg_post(events, ts=None, forge=False):
    body = json.dumps(events, separators=(",", ":")).encode()
    ts = str(int(time.time())) if ts is None else str(ts)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "SendGrid Event API",
        "X-Twilio-Email-Event-Webhook-Signature": sg_sign(ts, body, forge),
        "X-Twilio-Email-Event-Webhook-Timestamp": ts,
    }
    return post(WEBHOOK_BASE + "/api/v1/webhooks/sendgrid", body, headers)


def sg_event(rec, event, extra=None):
    ev = {
        "email": rec["to"],
        "timestamp": int(time.time()),
        "event": event,
        "sg_event_id": base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()[:22],
        "sg_message_id": rec["id"] + ".recvd-" + secrets.token_hex(4) + "-1-0",
        "smtp-id": "<%s@ismtpd0001p1lon1.sendgrid.net>" % rec["id"],
    }
    for k, v in (rec.get("custom_args") or {}).items():
        ev.setdefault(k, v)
    if extra:
        ev.update(extra)
    return ev


def sg_events(rec):
    if bounces(rec["to"]):
        final = sg_event(rec, "bounce", {"type": "bounce", "status": "5.1.1",
                                         "reason": "550 5.1.1 The email account that you "
                                                   "tried to reach does not exist."})
        status = "bounced"
    else:
        final = sg_event(rec, "delivered", {"response": "250 OK"})
        status = "delivered"
    for events in ([sg_event(rec, "processed")], [final]):
        code = deliver(lambda: sg_post(events))
        with LOCK:
            rec["webhooks"].append({"event": events[0]["event"], "status": code})
    with LOCK:
        rec["status"] = status


def deliver(fn):
    """Posts with a few retries on connection errors and 5xx (as the providers retry)."""
    code = 0
    for attempt in range(4):
        code, body = fn()
        if 0 < code < 500:
            break
        log("webhook attempt %d: %s %s" % (attempt + 1, code, body[:200]))
        time.sleep(0.5 * (attempt + 1))
    return code


# ---- Twilio --------------------------------------------------------------------------


def tw_error(code, message, status):
    return status, {"code": code, "message": message,
                    "more_info": "https://www.twilio.com/docs/errors/%d" % code,
                    "status": status}


def segments(body):
    if all(ch in GSM7 for ch in body):
        return 1 if len(body) <= 160 else -(-len(body) // 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def tw_auth(handler, sid):
    auth = handler.headers.get("Authorization", "")
    if not auth.startswith("Basic "):
        return False
    try:
        user, _, pw = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        token = secret("twilio_auth_token").decode()
    except (ValueError, OSError):
        return False
    return user == sid and hmac.compare_digest(pw.encode(), token.encode())


def tw_send(handler, sid, raw):
    if not SID_RE.match(sid) or not tw_auth(handler, sid):
        st, body = tw_error(20003, "Authenticate", 401)
        return st, body, {"WWW-Authenticate": 'Basic realm="Twilio API"'}
    ctype = handler.headers.get("Content-Type", "")
    if not ctype.startswith("application/x-www-form-urlencoded"):
        st, body = tw_error(21601, "Content-Type must be application/x-www-form-urlencoded",
                            400)
        return st, body, {}
    try:
        form = urllib.parse.parse_qs(raw.decode("utf-8"), keep_blank_values=True,
                                     strict_parsing=bool(raw))
    except (UnicodeDecodeError, ValueError):
        st, body = tw_error(21601, "Invalid request body", 400)
        return st, body, {}
    f = {k: v[0] for k, v in form.items()}
    to, frm, text = f.get("To", ""), f.get("From", ""), f.get("Body", "")
    if not to:
        return tw_error(21604, "A 'To' phone number is required.", 400) + ({},)
    if not frm and not f.get("MessagingServiceSid"):
        return tw_error(21603, "A 'From' phone number is required.", 400) + ({},)
    if not text and not f.get("MediaUrl") and not f.get("ContentSid"):
        return tw_error(21602, "Message body is required.", 400) + ({},)
    if len(text) > 1600:
        return tw_error(21617, "The concatenated message body exceeds the 1600 character "
                               "limit.", 400) + ({},)
    if not E164_RE.match(to):
        return tw_error(21211, "The 'To' number %s is not a valid phone number." % to,
                        400) + ({},)
    cb = f.get("StatusCallback")
    if cb is not None and (not cb.startswith(("http://", "https://")) or len(cb) > 4000):
        return tw_error(21609, "Invalid StatusCallback", 400) + ({},)
    fault = fault_for([to])
    log_request("twilio", [to], fault)
    if fault == "hang":
        hang()
        return None, None, {}
    if fault == "fail500":
        return tw_error(20500, "Internal Server Error", 500) + ({},)
    if fault == "fail429":
        return tw_error(20429, "Too Many Requests", 429) + ({"Retry-After": RETRY_AFTER},)
    if fault == "fail400":
        code = dict(sms_tags(to)).get("fail400") or "21211"
        msgs = {"21211": "The 'To' number %s is not a valid phone number." % to,
                "21610": "Attempt to send to unsubscribed recipient",
                "21614": "'To' number is not a valid mobile number"}
        return tw_error(int(code), msgs.get(code, "Bad Request"), 400) + ({},)
    msid = "SM" + secrets.token_hex(16)
    now = email.utils.formatdate(usegmt=True)
    res = {
        "account_sid": sid,
        "api_version": "2010-04-01",
        "body": text,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": frm or None,
        "messaging_service_sid": f.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": str(segments(text)),
        "price": None,
        "price_unit": "USD",
        "sid": msid,
        "status": "queued",
        "subresource_uris": {
            "media": "/2010-04-01/Accounts/%s/Messages/%s/Media.json" % (sid, msid)},
        "to": to,
        "uri": "/2010-04-01/Accounts/%s/Messages/%s.json" % (sid, msid),
    }
    rec = {
        "id": msid,
        "provider": "twilio",
        "to": to,
        "from": frm,
        "subject": None,
        "text": text,
        "html": None,
        "received_at": now_rfc3339(),
        "custom_args": {},
        "status_callback": cb,
        "status": "queued",
        "webhooks": [],
        "resource": res,
    }
    with LOCK:
        MESSAGES.append(rec)
        BY_SID[msid] = rec
    schedule(lambda: tw_callbacks(rec))
    return 201, res, {}


def tw_date_bound(value):
    """A DateSent filter value (YYYY-MM-DD or ISO 8601, GMT) as (datetime, date only)."""
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            d = datetime.datetime.strptime(value, "%Y-%m-%d")
            return d.replace(tzinfo=datetime.timezone.utc), True
        d = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (d if d.tzinfo else d.replace(tzinfo=datetime.timezone.utc)), False
    except ValueError:
        return None, False


def tw_list(sid, qs, path):
    """GET .../Messages.json: (status, body) in the real page shape, newest first."""
    q = {k: v[0] for k, v in qs.items()}
    bounds = []
    for key, op in (("DateSent", "="), ("DateSent<", "<="), ("DateSent>", ">=")):
        if key in q:
            at, day = tw_date_bound(q[key])
            if at is None:
                return tw_error(20001, "Invalid value for %s" % key, 400)
            bounds.append((op, at, day))
    size, page = q.get("PageSize", "50"), q.get("Page", "0")
    if not size.isdigit() or not 1 <= int(size) <= 1000 or not page.isdigit():
        return tw_error(20001, "Invalid paging parameters", 400)
    size, page = int(size), int(page)

    def sent_ok(res):
        if not bounds:
            return True
        if not res["date_sent"]:
            return False  # null until sent: no DateSent filter matches a queued message
        sent = email.utils.parsedate_to_datetime(res["date_sent"])
        for op, at, day in bounds:
            a, b = (sent.date(), at.date()) if day else (sent, at)
            if (op == "=" and a != b) or (op == "<=" and a > b) or (op == ">=" and a < b):
                return False
        return True

    with LOCK:
        found = [dict(r["resource"]) for r in reversed(MESSAGES)
                 if r["provider"] == "twilio" and r["resource"]["account_sid"] == sid
                 and ("To" not in q or r["to"] == q["To"])
                 and ("From" not in q or r["from"] == q["From"])
                 and sent_ok(r["resource"])]
    start = page * size
    items = found[start:start + size]
    filt = [(k, v) for k, v in q.items() if k not in ("Page", "PageSize", "PageToken")]

    def uri(p):
        return "%s?%s" % (path, urllib.parse.urlencode(filt + [("PageSize", size), ("Page", p)]))

    return 200, {
        "end": start + len(items) - 1 if items else start,
        "first_page_uri": uri(0),
        "messages": items,
        "next_page_uri": uri(page + 1) if start + size < len(found) else None,
        "page": page,
        "page_size": size,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
        "start": start,
        "uri": uri(page),
    }


def tw_signature(url, params, forge=False):
    token = secret("twilio_auth_token")
    if forge:
        token = b"forged-" + token
    data = url + "".join(k + params[k] for k in sorted(params))
    mac = hmac.new(token, data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def tw_post(params, url=None, forge=False):
    """Posts a signed status callback; |url| is the URL signed (its path is used on the
    webhook base, as a provider reaching a public URL behind a proxy)."""
    signed = url or WEBHOOK_BASE + "/api/v1/webhooks/twilio"
    parts = urllib.parse.urlsplit(signed)
    target = WEBHOOK_BASE + parts.path + ("?" + parts.query if parts.query else "")
    body = urllib.parse.urlencode(params).encode()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
        "User-Agent": "TwilioProxy/1.1",
        "X-Twilio-Signature": tw_signature(signed, params, forge),
    }
    return post(target, body, headers)


def tw_callbacks(rec):
    res = rec["resource"]
    steps = ["sent", "undelivered" if bounces(rec["to"]) else "delivered"]
    for st in steps:
        params = {
            "AccountSid": res["account_sid"],
            "ApiVersion": "2010-04-01",
            "From": res["from"] or "",
            "MessageSid": res["sid"],
            "MessageStatus": st,
            "SmsSid": res["sid"],
            "SmsStatus": st,
            "To": res["to"],
        }
        if st == "undelivered":
            params["ErrorCode"] = "30003"
        with LOCK:
            rec["status"] = st
            res["status"] = st
            res["date_updated"] = email.utils.formatdate(usegmt=True)
            if st == "sent":
                res["date_sent"] = res["date_updated"]
            if st == "undelivered":
                res["error_code"] = 30003
                res["error_message"] = "Unreachable destination handset"
        code = deliver(lambda: tw_post(params, rec.get("status_callback")))
        with LOCK:
            rec["webhooks"].append({"event": st, "status": code})


# ---- HTTP ----------------------------------------------------------------------------


def log_request(provider, addrs, fault):
    with LOCK:
        REQUESTS.append({"provider": provider, "to": addrs, "fault": fault,
                         "at": now_rfc3339()})


def public(rec):
    return {k: v for k, v in rec.items() if k not in ("resource",)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "standin/1"

    def log_message(self, fmt, *args):
        log("%s %s" % (self.address_string(), fmt % args))

    def reply(self, status, body=None, headers=None, ctype="application/json"):
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if data:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY + 1:
            return None
        return self.rfile.read(n) if n > 0 else b""

    def do_GET(self):
        parts = urllib.parse.urlsplit(self.path)
        path = parts.path
        qs = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        if path == "/v3/messages":
            return self.reply(*sg_activity(self, qs))
        m = re.match(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$", path)
        if m:
            if not SID_RE.match(m.group(1)) or not tw_auth(self, m.group(1)):
                return self.reply(*tw_error(20003, "Authenticate", 401))
            return self.reply(*tw_list(m.group(1), qs, path))
        if path == "/__messages":
            with LOCK:
                out = [public(r) for r in reversed(MESSAGES)]
            return self.reply(200, out)
        if path == "/__requests":
            with LOCK:
                out = list(reversed(REQUESTS))
            return self.reply(200, out)
        if path == "/__health":
            return self.reply(200, {"status": "ok"})
        m = re.match(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)\.json$", path)
        if m:
            if not tw_auth(self, m.group(1)):
                return self.reply(*tw_error(20003, "Authenticate", 401))
            with LOCK:
                rec = BY_SID.get(m.group(2))
                res = dict(rec["resource"]) if rec else None
            if res is None:
                return self.reply(*tw_error(20404, "The requested resource %s was not found"
                                            % path, 404))
            return self.reply(200, res)
        self.reply(404, {"errors": [{"message": "not found", "field": None, "help": None}]})

    def do_DELETE(self):
        if urllib.parse.urlsplit(self.path).path == "/__messages":
            with LOCK:
                MESSAGES.clear()
                REQUESTS.clear()
                FAULTS.clear()
                BY_SID.clear()
            return self.reply(204)
        self.reply(404, {"errors": [{"message": "not found", "field": None, "help": None}]})

    def do_POST(self):
        path = urllib.parse.urlsplit(self.path).path
        raw = self.body()
        if raw is None:
            self.close_connection = True
            return self.reply(413, {"errors": [{"message": "content too large",
                                                "field": None, "help": None}]})
        if path == "/v3/mail/send":
            st, body, hdrs = sg_send(self, raw)
        elif path == "/__webhook":
            st, body, hdrs = test_webhook(raw)
        else:
            m = re.match(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$", path)
            if not m:
                return self.reply(404, {"errors": [{"message": "not found", "field": None,
                                                    "help": None}]})
            st, body, hdrs = tw_send(self, m.group(1), raw)
        if st is None:  # hang: drop the connection without an answer
            self.close_connection = True
            return
        self.reply(st, body, hdrs)


def test_webhook(raw):
    try:
        req = json.loads(raw)
        forge = bool(req.get("forge"))
        if req.get("provider") == "sendgrid":
            post = lambda: sg_post(req["events"], req.get("timestamp"), forge)
        elif req.get("provider") == "twilio":
            params = {str(k): str(v) for k, v in req["params"].items()}
            post = lambda: tw_post(params, req.get("url"), forge)
        else:
            return 400, {"error": "provider must be sendgrid or twilio"}, {}
        code, body = post()
        for _ in range(60):  # like the providers, retry what the gateway rate-limited
            if code != 429:
                break
            time.sleep(1)
            code, body = post()
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return 400, {"error": "bad request: %s" % e}, {}
    return 200, {"status": code, "body": body}, {}


class Server(ThreadingHTTPServer):
    # A deep accept queue: with socketserver's default of 5, a burst of connections overflows
    # it and the kernel delays their handshakes for tens of seconds (SYN-ACK retransmits), so
    # requests the client already gave up on would still arrive and count as messages.
    request_queue_size = 1024
    daemon_threads = True


def main():
    srv = Server((HOST, PORT), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for _ in range(WEBHOOK_WORKERS):
        threading.Thread(target=job_worker, daemon=True).start()
    log("listening on http://%s:%d (webhooks to %s)" % (HOST, PORT, WEBHOOK_BASE))
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
