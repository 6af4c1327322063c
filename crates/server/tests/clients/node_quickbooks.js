// node-quickbooks and intuit-oauth (from npm) against a running Ledgerhook server,
// changing only their endpoint URLs: the OAuth flow through the consent page, create,
// get, update, find with criteria and fetchAll, delete, CDC, a stale SyncToken, refresh,
// revoke, then 401.
//
// Run by crates/server/tests/api/clients.rs with LEDGERHOOK_BASE, REALM_ID, CLIENT_ID,
// CLIENT_SECRET and REDIRECT_URI. Prints one line per check; exits 1 at the first failure.

const QuickBooks = require('node-quickbooks');
const OAuthClient = require('intuit-oauth');

const { LEDGERHOOK_BASE: BASE, REALM_ID: REALM, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env;

function check(name, condition, detail) {
  if (!condition) {
    console.log(`FAIL ${name}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
    process.exit(1);
  }
  console.log(`ok ${name}`);
}

// The code of the QuickBooks Fault a failed call carries (node-quickbooks rejects with
// axios' error, the Fault in its response).
function fault(err) {
  const body = (err && err.response && err.response.data) || err;
  return body && body.Fault && body.Fault.Error[0].code;
}

async function main() {
  const oauth = new OAuthClient({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, environment: 'sandbox', redirectUri: REDIRECT_URI });
  oauth.setAuthorizeURLs({
    authorizeEndpoint: `${BASE}/connect/oauth2`,
    tokenEndpoint: `${BASE}/oauth2/v1/tokens/bearer`,
    revokeEndpoint: `${BASE}/oauth2/v1/tokens/revoke`,
    userInfoEndpoint: `${BASE}/v1/openid_connect/userinfo`,
  });
  const authorize = oauth.authorizeUri({ scope: [OAuthClient.scopes.Accounting], state: 'node-state' });
  const page = await fetch(authorize);
  check('consent page lists the company', page.status === 200 && (await page.text()).includes(REALM));
  const consent = await fetch(`${BASE}/connect/oauth2`, {
    method: 'POST',
    body: new URLSearchParams({ client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, state: 'node-state', realm_id: REALM }),
    redirect: 'manual',
  });
  await oauth.createToken(consent.headers.get('location'));
  const token = { ...oauth.getToken() };
  check('code exchanged for tokens', token.access_token && token.refresh_token && token.realmId === REALM, token);

  QuickBooks.V3_ENDPOINT_BASE_URL = `${BASE}/v3/company/`;
  QuickBooks.TOKEN_URL = `${BASE}/oauth2/v1/tokens/bearer`;
  QuickBooks.REVOKE_URL = `${BASE}/oauth2/v1/tokens/revoke`;
  const qbo = new QuickBooks(CLIENT_ID, CLIENT_SECRET, token.access_token, false, REALM, true, false, 75, '2.0', token.refresh_token);
  const call = (method, ...args) =>
    new Promise((resolve, reject) => qbo[method](...args, (err, body) => (err ? reject(err) : resolve(body))));

  const amy = await call('createCustomer', { DisplayName: 'Amy' });
  check('create', amy.Id === '1' && amy.SyncToken === '0' && amy.Active === true, amy);
  await call('createCustomer', { DisplayName: 'Bob', CompanyName: 'Bolts' });
  await call('createCustomer', { DisplayName: 'Cy', CompanyName: 'Birds' });
  const got = await call('getCustomer', amy.Id);
  check('get', got.DisplayName === 'Amy', got);
  const updated = await call('updateCustomer', { Id: amy.Id, SyncToken: got.SyncToken, Notes: 'vip' });
  check('update (sparse, ?operation=update)', updated.SyncToken === '1' && updated.Notes === 'vip' && updated.DisplayName === 'Amy', updated);
  const stale = await call('updateCustomer', { Id: amy.Id, SyncToken: '0', Notes: 'lost' }).catch((e) => e);
  check('stale SyncToken is a Fault 5010', fault(stale) === '5010', stale.message);

  const bob = await call('findCustomers', [{ field: 'DisplayName', value: 'Bob', operator: '=' }]);
  check('find with =', bob.QueryResponse.Customer.length === 1 && bob.QueryResponse.Customer[0].CompanyName === 'Bolts', bob);
  const like = await call('findCustomers', [{ field: 'DisplayName', value: '%y', operator: 'LIKE' }]);
  check('find with LIKE', like.QueryResponse.Customer.map((c) => c.Id).join() === '1,3', like);
  const listed = await call('findCustomers', [{ field: 'Id', value: ['1', '3'], operator: 'IN' }, { field: 'desc', value: 'Id' }]);
  check('find with IN and desc', listed.QueryResponse.Customer.map((c) => c.Id).join() === '3,1', listed);
  const all = await call('findCustomers', { fetchAll: true });
  check('fetchAll', all.QueryResponse.Customer.length === 3, all);
  const count = await call('findCustomers', { count: true });
  check('count', count.QueryResponse.totalCount === 3, count);

  const invoice = await call('createInvoice', { CustomerRef: { value: amy.Id }, Line: [{ Amount: 40, DetailType: 'SalesItemLineDetail', SalesItemLineDetail: {} }] });
  check('invoice', invoice.TotalAmt === 40 && invoice.DocNumber === '1001', invoice);
  await call('deleteInvoice', invoice.Id);
  const gone = await call('getInvoice', invoice.Id).catch((e) => e);
  check('deleted invoice is gone (610)', fault(gone) === '610', gone.message);

  const since = new Date(Date.now() - 5 * 60 * 1000).toISOString();
  const cdc = await call('changeDataCapture', ['Customer', 'Invoice'], since);
  const responses = cdc.CDCResponse[0].QueryResponse;
  check('changeDataCapture', responses[0].Customer.length === 3 && responses[1].Invoice[0].status === 'Deleted', cdc);

  const before = { access: token.access_token, refresh: token.refresh_token };
  await oauth.refresh();
  const refreshed = oauth.getToken();
  check('refresh (intuit-oauth)', refreshed.access_token !== before.access && refreshed.refresh_token !== before.refresh, refreshed);
  qbo.token = refreshed.access_token;
  qbo.refreshToken = refreshed.refresh_token;
  await new Promise((resolve, reject) => qbo.refreshAccessToken((err, body) => (err ? reject(err) : resolve(body))));
  check('refresh (node-quickbooks)', qbo.token !== refreshed.access_token && qbo.refreshToken !== refreshed.refresh_token);
  const again = await call('getCustomer', amy.Id);
  check('the refreshed token works', again.Id === amy.Id);
  await oauth.revoke({ refresh_token: qbo.refreshToken });
  const denied = await call('getCustomer', amy.Id).catch((e) => e);
  check('revoked: 401', denied.response && denied.response.status === 401, denied.message);
  console.log('done');
}

main().catch((e) => {
  console.log(`FAIL exception: ${e && (e.stack || JSON.stringify(e))}`);
  process.exit(1);
});
