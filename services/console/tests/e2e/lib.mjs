// lib.mjs - helpers of the console's browser tests: the real stack's API over TLS, the
// provider stand-in's mailbox, psql, phrctl, TOTP codes, Chromium (Debian's, through
// playwright-core) and a tiny pass/fail counter.
//
// Environment (as for build-*/tests/itest, see tests/run.sh): PHR_TEST_GATEWAY,
// PHR_TEST_VAR, PHR_TEST_PG_HOST, PHR_TEST_PG_PORT, PHR_STANDIN_PORT, PHR_BUILD;
// PHR_CHROMIUM (default /usr/bin/chromium); PHR_CONSOLE_ARTIFACTS (screenshots, default
// $PHR_TEST_VAR/console-artifacts).

import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

function need(name) {
    const v = process.env[name];
    if (!v) {
        throw new Error(`${name} is not set`);
    }
    return v;
}

export const GATEWAY = need('PHR_TEST_GATEWAY');
export const VAR = need('PHR_TEST_VAR');
export const STANDIN = `http://127.0.0.1:${need('PHR_STANDIN_PORT')}`;
export const ARTIFACTS = process.env.PHR_CONSOLE_ARTIFACTS || path.join(VAR, 'console-artifacts');
const CA = fs.readFileSync(path.join(VAR, 'tls', 'server.crt'));

/** One HTTP/1.1 request to the gateway (its self-signed certificate trusted). */
export function http(method, url, { body, token, headers = {} } = {}) {
    const u = new URL(url, GATEWAY);
    const data = body === undefined ? undefined : JSON.stringify(body);
    const h = { Accept: 'application/json', ...headers };
    if (token) {
        h.Authorization = `Bearer ${token}`;
    }
    if (data !== undefined) {
        h['Content-Type'] = 'application/json';
        h['Content-Length'] = Buffer.byteLength(data);
    }
    return new Promise((resolve, reject) => {
        const req = https.request(u, { method, headers: h, ca: CA, servername: 'localhost' }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                const text = Buffer.concat(chunks).toString('utf8');
                let json = null;
                try {
                    json = text ? JSON.parse(text) : null;
                } catch {
                    json = null;
                }
                resolve({ status: res.statusCode, headers: res.headers, text, json });
            });
        });
        req.on('error', reject);
        req.setTimeout(15000, () => req.destroy(new Error(`timeout ${method} ${url}`)));
        if (data !== undefined) {
            req.write(data);
        }
        req.end();
    });
}

/** An API call that must answer |want|; its JSON body. */
export async function api(method, p, want, opts = {}) {
    for (let i = 0; ; i++) {
        const r = await http(method, `/api/v1${p}`, opts);
        if (r.status === 429 && i < 20) {
            await sleep(1000); // the gateway's login zone: wait it out like it_request
            continue;
        }
        if (r.status !== want) {
            throw new Error(`${method} ${p}: ${r.status} ${r.text.slice(0, 300)}`);
        }
        return r.json;
    }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls |fn| until it returns a truthy value (or throws after |ms|). */
export async function eventually(fn, what, ms = 20000) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await fn();
        if (v) {
            return v;
        }
        if (Date.now() > end) {
            throw new Error(`timed out waiting for ${what}`);
        }
        await sleep(250);
    }
}

export function uniqueEmail(tag) {
    return `${tag}-${Date.now().toString(36)}${crypto.randomBytes(3).toString('hex')}@example.jp`;
}

/** The newest stand-in e-mail to |to| whose text matches |re|: the first group. */
export async function mailed(to, re) {
    return eventually(async () => {
        const r = await fetch(`${STANDIN}/__messages`);
        const all = await r.json();
        for (const m of all) {
            if (m.to === to) {
                const hit = re.exec(`${m.text ?? ''}\n${m.html ?? ''}`);
                if (hit) {
                    return hit[1];
                }
            }
        }
        return null;
    }, `an e-mail to ${to}`);
}

export const INITIAL_PW = /(?:Initial password|初期パスワード)\s*[:：]\s*(\S+)/;

/** Runs SQL in service |db|'s database; the output lines (tab-separated, unaligned). */
export function psql(db, sql) {
    const pw = fs.readFileSync(path.join(VAR, 'secrets', `pg_${db}.password`), 'utf8').trim();
    return execFileSync(
        'psql',
        ['-X', '-q', '-tA', '-h', need('PHR_TEST_PG_HOST'), '-p', need('PHR_TEST_PG_PORT'),
            '-U', `phr_${db}`, '-d', `phr_${db}`, '-c', sql],
        { env: { ...process.env, PGPASSWORD: pw }, encoding: 'utf8' },
    ).trim();
}

/** A new operator through phrctl; its e-mail and initial password. */
export function phrctlOperator() {
    const email = uniqueEmail('op');
    const build = process.env.PHR_BUILD || 'build';
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
    const bin = path.isAbsolute(build) ? `${build}/bin/phrctl` : path.join(root, build, 'bin/phrctl');
    const out = execFileSync(bin, ['operator', 'create', '--email', email, '--name', 'IT Operator', '--json'], {
        env: {
            ...process.env,
            PHR_SECRETS_DIR: path.join(VAR, 'secrets'),
            PHR_PG_HOST: need('PHR_TEST_PG_HOST'),
            PHR_PG_PORT: need('PHR_TEST_PG_PORT'),
        },
        encoding: 'utf8',
    });
    return { email, password: JSON.parse(out.split('\n')[0]).initial_password };
}

/** RFC 6238 TOTP (SHA-1, 6 digits, 30 s) of a base32 secret at |when| (ms). */
export function totp(secret, when = Date.now()) {
    const alpha = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
    let bits = '';
    for (const c of secret.replace(/=+$/, '')) {
        bits += alpha.indexOf(c).toString(2).padStart(5, '0');
    }
    const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
    const msg = Buffer.alloc(8);
    msg.writeBigUInt64BE(BigInt(Math.floor(when / 30000)));
    const h = crypto.createHmac('sha1', key).update(msg).digest();
    const o = h[h.length - 1] & 15;
    return String((h.readUInt32BE(o) & 0x7fffffff) % 1e6).padStart(6, '0');
}

/** Debian's Chromium; playwright-core gives it a fresh, empty profile of its own. */
export async function launch() {
    const browser = await chromium.launch({
        executablePath: process.env.PHR_CHROMIUM || '/usr/bin/chromium',
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    return { browser, close: () => browser.close() };
}

/** A new page of its own context; CSP violations and page errors are collected. */
export async function newPage(browser, { width = 1280, height = 800 } = {}) {
    const ctx = await browser.newContext({
        ignoreHTTPSErrors: true,
        viewport: { width, height },
        locale: 'ja-JP',
        timezoneId: 'America/New_York', // the console must still show JST
    });
    const page = await ctx.newPage();
    page.problems = [];
    page.on('console', (m) => {
        if (/Content[- ]Security[- ]Policy|Refused to/i.test(m.text())) {
            page.problems.push(m.text());
        }
    });
    page.on('pageerror', (e) => page.problems.push(String(e)));
    return page;
}

export async function shot(page, name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: false });
    return file;
}

const AXE = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * axe-core over |page| as it is now: the WCAG 2.1 A/AA rules' violations of impact serious
 * or critical, one line each. axe.min.js goes in with page.evaluate (DevTools evaluation,
 * which the page's CSP does not govern; addScriptTag would add an inline script the CSP
 * blocks), so the scan runs under the console's real CSP, bypassCSP off.
 */
export async function axeViolations(page, label) {
    await page.evaluate(AXE);
    const res = await page.evaluate(() => globalThis.axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
        resultTypes: ['violations'],
    }));
    return res.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${label}: ${v.id} (${v.impact}) ${v.nodes.length}x ` +
            v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', '));
}

// ---- counting ----------------------------------------------------------------------
let passed = 0;
let failed = 0;

/** Runs one named check; a failure is counted and printed, the run goes on. */
export async function check(name, fn) {
    try {
        await fn();
        passed++;
        console.log(`ok   ${name}`);
        return true;
    } catch (e) {
        failed++;
        console.log(`FAIL ${name}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}`);
        return false;
    }
}

export function assert(cond, msg) {
    if (!cond) {
        throw new Error(msg);
    }
}

export function summary() {
    console.log(`${passed} passed, ${failed} failed`);
    return failed === 0 && passed > 0 ? 0 : 1;
}
