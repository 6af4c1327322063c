// The dashboard in a real browser (Debian's chromium through playwright-core): sign in,
// the overview with its chart and a blacklisted configuration reactivated in one click,
// notifications filtered with a detail and a redelivery, realms, a change made from the
// page; keyboard reachability; and an accessibility scan (axe-core) of every view.
// Prints `ok …` per check and `done`; exits non-zero on the first failure.
const { chromium } = require('playwright-core');
const axeSource = require('fs').readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const base = process.env.LEDGERHOOK_BASE;
const token = process.env.OPERATOR_TOKEN;
const appName = process.env.APP_NAME;
const failing = process.env.FAILING_NOTIFICATION;

function check(condition, what) {
  if (!condition) { console.error('FAILED: ' + what); process.exit(1); }
  console.log('ok ' + what);
}

const shots = process.env.SCREENSHOTS;
let shot = 0;

async function axe(page, view) {
  if (shots) await page.screenshot({ path: `${shots}/${String(++shot).padStart(2, '0')}-${view.replace(/[^a-z]+/g, '-')}.png`, fullPage: true });
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => await window.axe.run(document, { resultTypes: ['violations'] }));
  const found = result.violations.map(v => `${v.id} (${v.impact}): ${v.nodes.map(n => n.target.join(' ')).slice(0, 3).join('; ')}`);
  check(found.length === 0, `no accessibility violations in ${view}${found.length ? ': ' + found.join(' | ') : ''}`);
}

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  const page = await browser.newPage();
  page.on('console', m => { if (m.type() === 'error') console.log('browser console: ' + m.text()); });
  page.on('pageerror', e => { console.error('FAILED: page error ' + e.message); process.exit(1); });
  await page.goto(base + '/');
  await axe(page, 'the sign-in page');
  // Keyboard: the token field is the first control reached.
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.id) === 'token', 'the token field is reached with Tab');
  await page.keyboard.type('wrong-token');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Sign-in failed'));
  check(true, 'a bad token is refused with a message');
  await page.fill('#token', token);
  await page.click('button[type=submit]');
  await page.waitForSelector(`text=${appName}`);
  const chartOf = `section.card:has(h2:has-text("${appName}")) figure svg[role=img]`;
  check(await page.isVisible(chartOf), 'the overview shows the chart of the last hour');
  const label = await page.getAttribute(chartOf, 'aria-label');
  check(/\d+ attempts delivered, [1-9]\d* failed/.test(label), 'the chart counts the failed attempts: ' + label);
  check(await page.isVisible('text=blacklisted'), 'the blacklisted configuration is shown with its state');
  await axe(page, 'the overview');
  // Before the fix: the change made while blacklisted is held.
  await page.click('nav button[data-view=notifications]');
  await page.waitForSelector('#f-app');
  await page.selectOption('#f-app', process.env.APP_ID);
  await page.click('#filters button[type=submit]');
  await page.waitForFunction(() => [...document.querySelectorAll('#rows tr')].some(r => r.textContent.includes('held')));
  check(true, 'the notification made while blacklisted is listed as held');
  await page.click('nav button[data-view=overview]');
  await page.waitForSelector(`section.card:has(h2:has-text("${appName}")) button[data-act=reactivate][data-env=sandbox]`);
  await page.click(`section.card:has(h2:has-text("${appName}")) button[data-act=reactivate][data-env=sandbox]`);
  await page.waitForFunction(() => document.getElementById('status').textContent.includes('active again'));
  await page.waitForSelector('h3:has-text("sandbox: active")');
  check(true, 'reactivate in one click');
  await page.click(`section.card:has(h2:has-text("${appName}")) button[data-act=test][data-env=sandbox]`);
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Test notification'));
  check((await page.textContent('#status')).includes('success'), 'a test notification sent from the page: ' + await page.textContent('#status'));

  await page.click('nav button[data-view=notifications]');
  await page.waitForSelector('#f-app');
  await page.selectOption('#f-app', process.env.APP_ID);
  await page.check('#f-live');
  await page.click('#filters button[type=submit]');
  await page.waitForSelector('#rows tr');
  // Live: the notification held while blacklisted turns delivered without a reload.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#rows tr')];
    return rows.length >= 3 && !rows.some(r => r.textContent.includes('held'));
  }, null, { timeout: 15000 });
  check(true, 'the held notification becomes delivered, seen without reloading the page');
  await page.uncheck('#f-live');
  await axe(page, 'the notifications');
  // Server-side paging: the delivered history, page after page, past its first 1,000.
  await page.selectOption('#f-status', 'delivered');
  await page.click('#filters button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('#rows tr').length === 50);
  const history = Number(process.env.HISTORY);
  let pages = 1;
  while (!(await page.isDisabled('#more'))) {
    const before = await page.locator('#rows tr').count();
    await page.click('#more');
    await page.waitForFunction(n => document.querySelectorAll('#rows tr').length > n || document.getElementById('more').disabled, before);
    pages += 1;
    if (pages > 100) break;
  }
  const ids = await page.$$eval('#rows button[data-act=show]', bs => bs.map(b => b.dataset.id));
  check(ids.length > history && new Set(ids).size === ids.length, `paged through ${ids.length} delivered notifications in ${pages} pages, none twice`);
  const created = await page.$$eval('#rows tr', rows => rows.map(r => Date.parse(r.children[6].textContent)));
  check(created.every((t, i) => i === 0 || created[i - 1] >= t), 'the pages run newest first');
  await page.selectOption('#f-status', 'dropped');
  await page.click('#filters button[type=submit]');
  await page.waitForFunction(() => [...document.querySelectorAll('#rows tr')].every(r => r.textContent.includes('dropped')) && document.querySelectorAll('#rows tr').length > 0);
  check(true, 'the status filter shows only dropped notifications');
  await page.click(`button[data-act=show][data-id="${failing}"]`);
  await page.waitForSelector('#detail-title');
  check(await page.isVisible('text=Payload') && await page.isVisible('caption:has-text("Attempts")'), 'the detail shows the payload and every attempt');
  const attempts = await page.locator('#detail tbody tr').count();
  check(attempts === 4, `the dropped notification lists its 4 attempts (got ${attempts})`);
  const headerSets = await page.locator('#detail details.headers').count();
  await page.click('#detail details.headers summary');
  const sent = await page.textContent('#detail details.headers pre');
  check(headerSets === 4 && /webhook-signature: v1,/.test(sent) && /intuit-signature: /.test(sent), 'each attempt shows the headers its request carried');
  await axe(page, 'a notification');
  await page.click('button[data-act=redeliver]');
  await page.waitForFunction(() => document.getElementById('status').textContent.startsWith('Redelivered'));
  check(true, 'redeliver from the detail');

  await page.click('nav button[data-view=realms]');
  await page.waitForSelector('caption:has-text("Realms")');
  await axe(page, 'realms and connections');
  await page.click('nav button[data-view=change]');
  await page.waitForSelector('#change');
  await axe(page, 'make a change');
  await page.fill('#c-id', '77');
  await page.click('#change button[type=submit]');
  await page.waitForFunction(() => !document.getElementById('status').textContent.startsWith('Redelivered'));
  const answer = await page.textContent('#status');
  check(answer.startsWith('Accepted 1'), 'a change made from the page is accepted: ' + answer);
  // …and its notification arrives: the newest in the list, delivered.
  await page.click('nav button[data-view=notifications]');
  await page.waitForSelector('#f-app');
  await page.selectOption('#f-status', '');
  await page.check('#f-live');
  await page.click('#filters button[type=submit]');
  await page.waitForFunction(() => {
    const top = document.querySelector('#rows tr');
    return top && top.textContent.includes('delivered') && !top.textContent.includes('(test)') && Date.now() - Date.parse(top.children[6].textContent) < 60000;
  }, null, { timeout: 15000 });
  const newest = await page.getAttribute('#rows tr:first-child button[data-act=show]', 'data-id');
  await page.click(`button[data-act=show][data-id="${newest}"]`);
  await page.waitForSelector('#detail-title');
  check((await page.textContent('#detail pre')).includes('"id": "77"'), 'the change made from the page arrives as a delivered notification');
  await page.uncheck('#f-live');
  // An app's key sees its own app only.
  const own = await browser.newPage();
  await own.goto(base + '/');
  await own.fill('#token', process.env.APP_KEY);
  await own.click('button[type=submit]');
  await own.waitForSelector(`text=${appName}`);
  check(!(await own.isVisible(`text=${process.env.OTHER_APP_NAME}`)), "an app key does not see another app");
  await browser.close();
  console.log('done');
})().catch(e => { console.error('FAILED: ' + (e.stack || e)); process.exit(1); });
