"""python-quickbooks and intuit-oauth (from PyPI) against a running Ledgerhook server,
changing only the base URLs: the whole OAuth flow, CRUD, queries, void, send, batch,
CDC, the libraries' exception classes, and a webhook verified with the library.

Run by crates/server/tests/api/clients.rs, which starts the server and passes:
LEDGERHOOK_BASE, LEDGERHOOK_OPERATOR, REALM_ID, CLIENT_ID, CLIENT_SECRET,
VERIFIER_TOKEN, REDIRECT_URI. Prints one line per check; exits 1 at the first failure.
"""

import json
import os
import queue
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

# The server under test speaks plain HTTP on loopback.
os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

import requests  # noqa: E402
from intuitlib.client import AuthClient  # noqa: E402
from intuitlib.enums import Scopes  # noqa: E402
from intuitlib.exceptions import AuthClientError  # noqa: E402
from quickbooks import QuickBooks  # noqa: E402
from quickbooks.batch import batch_create  # noqa: E402
from quickbooks.cdc import change_data_capture  # noqa: E402
from quickbooks.exceptions import (  # noqa: E402
    AuthorizationException,
    ObjectNotFoundException,
    QuickbooksException,
    ValidationException,
)
from quickbooks.objects.company_info import CompanyInfo  # noqa: E402
from quickbooks.objects.customer import Customer  # noqa: E402
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail  # noqa: E402
from quickbooks.objects.invoice import Invoice  # noqa: E402
from quickbooks.objects.payment import Payment  # noqa: E402

BASE = os.environ["LEDGERHOOK_BASE"]
OPERATOR = os.environ["LEDGERHOOK_OPERATOR"]
REALM = os.environ["REALM_ID"]
CLIENT_ID = os.environ["CLIENT_ID"]
CLIENT_SECRET = os.environ["CLIENT_SECRET"]
VERIFIER = os.environ["VERIFIER_TOKEN"]
REDIRECT = os.environ["REDIRECT_URI"]


def check(name, condition, detail=""):
    if not condition:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok {name}", flush=True)


def raises(name, exception, call):
    try:
        call()
    except exception as err:
        check(name, True)
        return err
    except Exception as err:  # the wrong class
        check(name, False, f"raised {type(err).__name__}: {err}")
    check(name, False, "nothing was raised")


# --- A webhook receiver on loopback, subscribed through the management API. ---
received = queue.Queue()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        received.put((body, self.headers.get("intuit-signature")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


hook = HTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=hook.serve_forever, daemon=True).start()
operator = {"Authorization": f"Bearer {OPERATOR}"}

# --- OAuth, from the discovery document, through the consent page. ---
auth = AuthClient(CLIENT_ID, CLIENT_SECRET, REDIRECT, f"{BASE}/.well-known/openid_sandbox_configuration/")
check("discovery document read", auth.token_endpoint.startswith(BASE) and auth.jwks_uri and auth.user_info_url)
url = auth.get_authorization_url([Scopes.ACCOUNTING], state_token="state-1")
page = requests.get(url)
check("consent page lists the company", page.status_code == 200 and REALM in page.text, page.text[:300])
consent = requests.post(
    f"{BASE}/connect/oauth2",
    data={"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "state": "state-1", "realm_id": REALM},
    allow_redirects=False,
)
redirect = parse_qs(urlparse(consent.headers["location"]).query)
check("redirect with code, realmId and state", redirect["realmId"] == [REALM] and redirect["state"] == ["state-1"])
auth.get_bearer_token(redirect["code"][0], realm_id=REALM)
check("code exchanged for tokens", auth.access_token and auth.refresh_token and auth.expires_in == 3600)
raises("a code works once", AuthClientError, lambda: auth.get_bearer_token(redirect["code"][0], realm_id=REALM))

# OpenID Connect: the library validates the id_token itself (issuer, audience, expiry,
# RS256 signature against jwks_uri) and keeps it only if it is valid.
oidc = AuthClient(CLIENT_ID, CLIENT_SECRET, REDIRECT, f"{BASE}/.well-known/openid_configuration")
oidc_url = oidc.get_authorization_url([Scopes.OPENID, Scopes.EMAIL, Scopes.ACCOUNTING], state_token="state-2")
scope = parse_qs(urlparse(oidc_url).query)["scope"][0]
check("consent page carries the scope", f'value="{scope}"' in requests.get(oidc_url).text)
consent = requests.post(
    f"{BASE}/connect/oauth2",
    data={"client_id": CLIENT_ID, "redirect_uri": REDIRECT, "state": "state-2", "realm_id": REALM, "scope": scope},
    allow_redirects=False,
)
oidc.get_bearer_token(parse_qs(urlparse(consent.headers["location"]).query)["code"][0], realm_id=REALM)
check("id_token valid by the library", oidc.id_token is not None)
info = oidc.get_user_info().json()
check("userinfo", info["realmid"] == REALM and info["sub"] and info["emailVerified"] is True, info)
check("userinfo needs openid", requests.get(auth.user_info_url, headers={"Authorization": f"Bearer {auth.access_token}"}).status_code == 403)

qb = QuickBooks(auth_client=auth, refresh_token=auth.refresh_token, company_id=REALM, minorversion=75)
qb.api_url_v3 = qb.sandbox_api_url_v3 = f"{BASE}/v3"

requests.put(
    f"{BASE}/api/v1/apps/{os.environ['APP_ID']}/webhooks/sandbox",
    headers=operator,
    json={"url": f"http://127.0.0.1:{hook.server_port}/hook", "entities": {"Customer": "*", "Invoice": "*", "Payment": "*"}},
).raise_for_status()

# --- CompanyInfo, then CRUD. ---
info = CompanyInfo.get(REALM, qb=qb)
check("CompanyInfo.get", info.CompanyName == "Test Co", info.to_json())

amy = Customer()
amy.DisplayName = "Amy's Bird Sanctuary"
amy.CompanyName = "Birds"
amy.Balance = 10
amy = amy.save(qb=qb)
check("create", amy.Id == "1" and amy.SyncToken == "0" and amy.Active is True, amy.to_json())
for name, company, balance in [("Bob", "Bolts", 250), ("Cy", "Birds", 40), ("Di", "Acme", 40)]:
    c = Customer()
    c.DisplayName, c.CompanyName, c.Balance = name, company, balance
    c.save(qb=qb)
read = Customer.get(amy.Id, qb=qb)
check("read", read.DisplayName == "Amy's Bird Sanctuary" and read.FullyQualifiedName == read.DisplayName)
read.Notes = "full update"
updated = read.save(qb=qb)
check("full update", updated.SyncToken == "1" and updated.Notes == "full update")
# A sparse update of a fetched object (a new Customer() carries every field, empty).
sparse = Customer.get(amy.Id, qb=qb)
sparse.sparse = True
sparse.PrimaryPhone = {"FreeFormNumber": "555"}
sparse = sparse.save(qb=qb)
check("sparse update", sparse.SyncToken == "2" and sparse.Notes == "full update" and sparse.PrimaryPhone.FreeFormNumber == "555", sparse.to_json())
stale = Customer.get(amy.Id, qb=qb)
stale.SyncToken = "0"
err = raises("stale SyncToken", QuickbooksException, lambda: stale.save(qb=qb))
check("stale SyncToken code", err.error_code == 5010, err.error_code)
raises("not found", ObjectNotFoundException, lambda: Customer.get(404, qb=qb))

# --- Listing and queries. ---
check("all()", [c.DisplayName for c in Customer.all(qb=qb)][:2] == ["Amy's Bird Sanctuary", "Bob"])
check("all(order_by)", [c.Id for c in Customer.all(order_by="Balance DESC", qb=qb)][0] == "2")
check("filter()", [c.Id for c in Customer.filter(CompanyName="Birds", qb=qb)] == ["1", "3"])
check("filter(Active=True)", len(Customer.filter(Active=True, qb=qb)) == 4)
check("where()", [c.Id for c in Customer.where("Balance >= 40 AND Balance < 250", qb=qb)] == ["3", "4"])
check("where() like", [c.Id for c in Customer.where("DisplayName LIKE '%Bird%'", qb=qb)] == ["1"])
check("choose() in", [c.Id for c in Customer.choose(["2", "4"], qb=qb)] == ["2", "4"])
check("count()", Customer.count(qb=qb) == 4 and Customer.count("CompanyName = 'Birds'", qb=qb) == 2)
page = Customer.where("", order_by="Id DESC", start_position=2, max_results=2, qb=qb)
check("paging and orderby", [c.Id for c in page] == ["3", "2"])
since = (datetime.now(timezone.utc) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S-00:00")
check("query() on MetaData", len(Customer.query(f"SELECT * FROM Customer WHERE MetaData.LastUpdatedTime > '{since}'", qb=qb)) == 4)
check("query() <", [c.Id for c in Customer.query("select * from Customer where Balance < 40", qb=qb)] == ["1"])
check("query() >", [c.Id for c in Customer.query("select * from Customer where Balance > 40", qb=qb)] == ["2"])
check("query() <=", len(Customer.query("select * from Customer where Balance <= 40", qb=qb)) == 3)
check("query() =", [c.Id for c in Customer.query("select * from Customer where DisplayName = 'Bob'", qb=qb)] == ["2"])
raises("a query with or is refused", ValidationException, lambda: Customer.where("Id = '1' OR Id = '2'", qb=qb))

# --- Invoices and payments: create, void, send; delete. ---
line = SalesItemLine()
line.Amount = 100
line.SalesItemLineDetail = SalesItemLineDetail()
invoice = Invoice()
invoice.Line = [line]
invoice.CustomerRef = amy.to_ref()
invoice = invoice.save(qb=qb)
check("invoice computed fields", invoice.TotalAmt == 100 and invoice.Balance == 100 and invoice.DocNumber == "1001")
sent = invoice.send(qb=qb)
check("send", sent["Invoice"]["EmailStatus"] == "EmailSent")
invoice = Invoice.get(invoice.Id, qb=qb)
invoice.void(qb=qb)
check("void of an Invoice", Invoice.get(invoice.Id, qb=qb).TotalAmt == 0)
payment = Payment()
payment.TotalAmt = 25
payment.CustomerRef = amy.to_ref()
payment = payment.save(qb=qb)
payment.void(qb=qb)
check("void of a Payment", Payment.get(payment.Id, qb=qb).PrivateNote == "Voided")
second = Invoice()
second.Line = [line]
second.CustomerRef = amy.to_ref()
second = second.save(qb=qb)
second.delete(qb=qb)
raises("a deleted invoice is gone", ObjectNotFoundException, lambda: Invoice.get(second.Id, qb=qb))

# --- Batch. ---
batch = []
for name in ["Ed", "Flo"]:
    c = Customer()
    c.DisplayName = name
    batch.append(c)
results = batch_create(batch, qb=qb)
check("batch_create", len(results.successes) == 2 and not results.faults, results.faults)

# --- CDC. ---
cdc = change_data_capture([Customer, Invoice], datetime.now(timezone.utc) - timedelta(minutes=5), qb=qb)
check("change_data_capture", len(cdc.Customer) == 6 and len(cdc.Invoice) == 2, (len(cdc.Customer), len(cdc.Invoice)))

# --- A webhook, verified with the library. ---
body, signature = received.get(timeout=15)
check("webhook signature verified", qb.validate_webhook_signature(body.decode("utf-8"), signature, VERIFIER))
check("a tampered body is not", not qb.validate_webhook_signature(body.decode("utf-8") + " ", signature, VERIFIER))

# --- Refresh, revoke, then 401. ---
old_refresh = auth.refresh_token
auth.refresh()
check("refresh", auth.refresh_token != old_refresh and auth.access_token)
raises("an old refresh token fails", AuthClientError, lambda: auth.refresh(refresh_token=old_refresh))
qb.session.access_token = auth.access_token
qb.session.token = {"access_token": auth.access_token, "token_type": "Bearer"}
check("the new access token works", Customer.count(qb=qb) == 6)
auth.revoke(token=auth.refresh_token)
raises("revoked: 401", AuthorizationException, lambda: Customer.count(qb=qb))
print("done", flush=True)
