// console_bench.mjs - case 16 of tests/bench/run.sh: cold first loads of the staff console
// through the gateway vs a minimal static page (one small script that renders a button) on
// the TLS baseline nginx, in Debian's headless Chromium driven by playwright-core (the
// console's own node_modules, the launch flags of services/console/tests/e2e/lib.mjs).
//
// usage: node console_bench.mjs OURS_URL BASE_URL
// Each load gets a fresh browser context (empty cache, new TLS connection), navigates and
// waits until the button named ログイン is visible: tti_ms is the time from the start of the
// navigation to then. Once the network is idle, bytes = transferSize (compressed bytes on
// the wire, headers included) of the navigation and every resource. One unmeasured load of
// each first, then BENCH_CONSOLE_LOADS (5) rounds, baseline and ours alternating; one line
// per measured load on stdout:
//   console_bench: subject=ours|base round=N bytes=B tti_ms=T
// Environment: PHR_CHROMIUM (/usr/bin/chromium), BENCH_CONSOLE_LOADS (5).
// Exit status: 0 when every load showed the button without a CSP violation or page error.

import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(path.join(root, 'services/console/package.json'));
const { chromium } = require('playwright-core');

const [ours, base] = process.argv.slice(2);
if (!ours || !base) {
    console.error('usage: node console_bench.mjs OURS_URL BASE_URL');
    process.exit(2);
}
const loads = Number.parseInt(process.env.BENCH_CONSOLE_LOADS || '5', 10);
if (!(loads >= 1)) {
    console.error('BENCH_CONSOLE_LOADS: a positive count');
    process.exit(2);
}

/** One cold load of |url| in a new context; { bytes, tti_ms }. */
async function coldLoad(browser, url) {
    const ctx = await browser.newContext({
        ignoreHTTPSErrors: true,
        viewport: { width: 1280, height: 800 },
        locale: 'ja-JP',
    });
    try {
        const page = await ctx.newPage();
        const problems = [];
        page.on('console', (m) => {
            if (/Content[- ]Security[- ]Policy|Refused to/i.test(m.text())) {
                problems.push(m.text());
            }
        });
        page.on('pageerror', (e) => problems.push(String(e)));
        const t0 = performance.now();
        const resp = await page.goto(url, { waitUntil: 'commit' });
        if (!resp || resp.status() !== 200) {
            throw new Error(`${url} answered ${resp ? resp.status() : 'nothing'}`);
        }
        await page.getByRole('button', { name: 'ログイン' })
            .waitFor({ state: 'visible', timeout: 30000 });
        const tti = performance.now() - t0;
        await page.waitForLoadState('networkidle');
        const bytes = await page.evaluate(() => {
            const nav = performance.getEntriesByType('navigation')[0];
            return performance.getEntriesByType('resource')
                .reduce((n, e) => n + e.transferSize, nav.transferSize);
        });
        if (problems.length) {
            throw new Error(`${url}: ${problems.join(' / ')}`);
        }
        if (!(bytes > 0)) {
            throw new Error(`${url}: no transfer size reported`);
        }
        return { bytes, tti_ms: tti };
    } finally {
        await ctx.close();
    }
}

const browser = await chromium.launch({
    executablePath: process.env.PHR_CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let rc = 0;
try {
    await coldLoad(browser, base);
    await coldLoad(browser, ours);
    for (let r = 1; r <= loads; r++) {
        for (const [subject, url] of [['base', base], ['ours', ours]]) {
            const m = await coldLoad(browser, url);
            console.log(`console_bench: subject=${subject} round=${r} bytes=${m.bytes} ` +
                `tti_ms=${m.tti_ms.toFixed(1)}`);
        }
    }
} catch (e) {
    console.error(`console_bench: ${e && e.message ? e.message : e}`);
    rc = 1;
} finally {
    await browser.close();
}
process.exit(rc);
