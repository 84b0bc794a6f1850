// console.mjs - the staff console end to end in headless Chromium against the real stack
// (nginx gateway, services, PostgreSQL, Redis, the provider stand-in): the story of issue 9.
//
// An operator (phrctl) creates an org of 3 seats; its admin signs in with the mailed initial
// password and must change it, adds a staff member, creates a group and a category and an
// invitation; a patient (through the API) links with the code and records blood pressure on
// five days; the staff member signs in, sees the patient, filters by group, opens the chart
// (point count checked), adds a clinic record; the admin changes a role and sees the seats;
// TOTP enrolment and sign-in with a recovery code; own sessions; forgot password; the idle
// timeout; English and 768 px; the admin's audit log (filters, export) and the month's access
// review with an attestation; axe-core over the main pages at 1280 and 768 px. Screenshots
// go to ARTIFACTS.

import fs from 'node:fs';
import {
    api, assert, axeViolations, check, eventually, GATEWAY, http, INITIAL_PW, launch, mailed, newPage,
    phrctlOperator, psql, shot, summary, totp, uniqueEmail,
} from './lib.mjs';

const NEW_PW = 'Kx7!vQ2#mP9zLw4$';
const PATIENT_PW = 'Pt5%nR8&wE3qZy6!';
const ctx = {};

/** Signs in on |page| (at the sign-in form) as |email| / |pw|. */
async function signIn(page, email, pw) {
    await page.getByLabel('メールアドレス').fill(email);
    await page.getByLabel('パスワード', { exact: true }).fill(pw);
    await page.getByRole('button', { name: 'ログイン' }).click();
}

async function forcedChange(page, oldPw) {
    await page.getByRole('heading', { name: '初期パスワードの変更' }).waitFor();
    await page.getByLabel('現在のパスワード').fill(oldPw);
    await page.getByLabel('新しいパスワード', { exact: true }).fill(NEW_PW);
    await page.getByLabel('新しいパスワード（確認）').fill(NEW_PW);
    await page.getByRole('button', { name: 'パスワードを変更' }).click();
    await page.getByRole('heading', { name: '患者' }).waitFor();
}

function noProblems(page) {
    assert(page.problems.length === 0, `browser reported: ${page.problems.join(' / ')}`);
}

const { browser, close } = await launch();
let admin;
let staff;

try {
    await check('setup: operator (phrctl), org of 3 seats, admin e-mailed', async () => {
        const op = phrctlOperator();
        const s = await api('POST', '/auth/login', 200, { body: { email: op.email, password: op.password } });
        await api('POST', '/auth/password', 204, {
            token: s.token, body: { current_password: op.password, new_password: NEW_PW },
        });
        ctx.adminEmail = uniqueEmail('cadm');
        const org = await api('POST', '/admin/orgs', 201, {
            token: s.token,
            body: { name: 'コンソール医院', seat_limit: 3, admin_email: ctx.adminEmail,
                admin_name: '管理 花子', admin_locale: 'ja' },
        });
        ctx.orgId = org.id;
        ctx.adminId = org.admin_account_id;
        ctx.adminInitial = await mailed(ctx.adminEmail, INITIAL_PW);
    });

    await check('gateway serves the console at / with a strict CSP; /api/ keeps its headers', async () => {
        const r = await http('GET', '/');
        assert(r.status === 200 && /^text\/html/.test(r.headers['content-type']), `GET / ${r.status}`);
        const csp = r.headers['content-security-policy'] ?? '';
        for (const d of ["default-src 'self'", "script-src 'self'", "style-src 'self'",
            "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"]) {
            assert(csp.includes(d), `CSP lacks ${d}: ${csp}`);
        }
        assert(!/unsafe-inline|unsafe-eval/.test(csp), 'CSP allows inline code');
        assert(r.headers['strict-transport-security'] && r.headers['x-content-type-options'] === 'nosniff',
            'security headers missing on /');
        assert(!/<script>|<script [^>]*>[^<]/.test(r.text) && !/ style=/.test(r.text), 'inline code in index.html');
        const route = await http('GET', '/patients/00000000-0000-4000-8000-000000000000');
        assert(route.status === 200 && route.text === r.text, 'a client route is not index.html');
        const js = /src="(\/assets\/[^"]+\.js)"/.exec(r.text)[1];
        const a = await http('GET', js, { headers: { 'Accept-Encoding': 'gzip' } });
        assert(a.status === 200 && /javascript/.test(a.headers['content-type']) &&
            a.headers['content-encoding'] === 'gzip' && /immutable/.test(a.headers['cache-control']),
        `asset ${a.status} ${a.headers['content-type']} ${a.headers['content-encoding']}`);
        const p = await http('GET', '/api/v1/auth/password-policy');
        assert(p.status === 200 && p.headers['content-security-policy'] === "default-src 'none'; frame-ancestors 'none'" &&
            /no-store/.test(p.headers['cache-control']), 'API headers changed');
        const nf = await http('GET', '/api/v1/nothing-here');
        assert(nf.status === 404 && nf.json?.code === 'not_found', '/api/ unknown path is not a 404 problem');
        for (const x of ['/internal/v1/status', '/metrics', '/readyz']) {
            const n = await http('GET', x);
            assert(n.status === 404 && n.json?.code === 'not_found', `${x} is routed`);
        }
        const post = await http('POST', '/', { body: {} });
        assert(post.status === 405, `POST / answered ${post.status}`);
    });

    admin = await newPage(browser);

    await check('benchmark: first load of the console (transfer size, time to interactive)', async () => {
        const t0 = Date.now();
        await admin.goto(`${GATEWAY}/`);
        await admin.getByRole('button', { name: 'ログイン' }).waitFor();
        const tti = Date.now() - t0;
        const bytes = await admin.evaluate(() => {
            const nav = performance.getEntriesByType('navigation')[0];
            return performance.getEntriesByType('resource')
                .reduce((n, e) => n + e.transferSize, nav.transferSize);
        });
        console.log(`BENCH console_first_load_bytes=${bytes} console_tti_ms=${tti}`);
        assert(bytes > 0 && bytes <= 200 * 1024, `first load ${bytes} bytes`);
    });

    await check('admin: wrong password is shown in words, then the forced first change', async () => {
        await signIn(admin, ctx.adminEmail, 'wrong-password-123');
        await admin.getByRole('alert').filter({ hasText: '正しくありません' }).waitFor();
        await signIn(admin, ctx.adminEmail, ctx.adminInitial);
        await forcedChange(admin, ctx.adminInitial);
        const token = await admin.evaluate(() => sessionStorage.getItem('phr.console.token'));
        const local = await admin.evaluate(() => localStorage.length);
        assert(token && local === 0 && !admin.url().includes(token), 'token kept outside memory/sessionStorage');
        const me = await api('GET', '/auth/session', 200, { token });
        assert(me.must_change_password === false && me.account.id === ctx.adminId, 'password not changed');
        noProblems(admin);
    });

    await check('admin: adds a staff member (seats 2 / 3, pending, e-mail sent)', async () => {
        await admin.getByRole('link', { name: 'スタッフ管理' }).click();
        await admin.locator('.seats').filter({ hasText: '1 / 3' }).waitFor();
        ctx.staffEmail = uniqueEmail('cstf');
        await admin.getByLabel('メールアドレス').fill(ctx.staffEmail);
        await admin.getByLabel('氏名').fill('看護 太郎');
        await admin.getByRole('button', { name: 'スタッフを追加' }).click();
        await admin.getByRole('status').filter({ hasText: 'スタッフを追加しました' }).waitFor();
        await admin.locator('.seats').filter({ hasText: '2 / 3' }).waitFor();
        const row = admin.locator(`tr[data-staff="${ctx.staffEmail}"]`);
        await row.filter({ hasText: '初回ログイン待ち' }).waitFor();
        ctx.staffInitial = await mailed(ctx.staffEmail, INITIAL_PW);
    });

    await check('admin: API errors in words (e-mail taken, last admin, seat limit)', async () => {
        await admin.getByLabel('メールアドレス').fill(ctx.staffEmail);
        await admin.getByLabel('氏名').fill('重複');
        await admin.getByRole('button', { name: 'スタッフを追加' }).click();
        await admin.getByRole('alert').filter({ hasText: '既に使われています' }).waitFor();
        // the only admin demotes itself: 409 last_admin
        const self = admin.locator(`tr[data-staff="${ctx.adminEmail}"]`);
        await self.getByRole('combobox').selectOption('staff');
        await self.getByRole('button', { name: '権限を変更' }).click();
        await admin.getByRole('alert').filter({ hasText: '最後の管理者' }).waitFor();
        // third seat, then the fourth is refused
        for (const [i, want] of [[1, 'スタッフを追加しました'], [2, '上限']]) {
            await admin.getByLabel('メールアドレス').fill(uniqueEmail(`cx${i}`));
            await admin.getByLabel('氏名').fill(`追加 ${i}`);
            await admin.getByRole('button', { name: 'スタッフを追加' }).click();
            await admin.locator('[role=status], [role=alert]').filter({ hasText: want }).waitFor();
        }
        await admin.locator('.seats').filter({ hasText: '3 / 3' }).waitFor();
    });

    await check('admin: deletes a staff member after confirming (seats 2 / 3)', async () => {
        const row = admin.locator('tr[data-staff^="cx1-"]');
        await row.getByRole('button', { name: /^削除/ }).click();
        await row.getByRole('alertdialog').getByRole('button', { name: '削除', exact: true }).click();
        await admin.locator('.seats').filter({ hasText: '2 / 3' }).waitFor();
        await row.waitFor({ state: 'detached' });
    });

    await check('admin: groups and categories: create, rename, delete', async () => {
        await admin.getByRole('link', { name: 'グループ・カテゴリ' }).click();
        for (const n of ['糖尿病外来', '一時グループ']) {
            await admin.getByLabel('グループ: 氏名').fill(n);
            await admin.locator('.labels').first().getByRole('button', { name: '作成' }).click();
            await admin.locator(`tr[data-label="${n}"]`).waitFor();
        }
        await admin.getByLabel('カテゴリ: 氏名').fill('要注意');
        await admin.locator('.labels').nth(1).getByRole('button', { name: '作成' }).click();
        await admin.locator('tr[data-label="要注意"]').waitFor();
        await admin.getByRole('button', { name: '名前を変更: 糖尿病外来' }).click();
        await admin.getByLabel('新しい名前').fill('糖尿病外来A');
        await admin.getByRole('button', { name: '保存' }).click();
        await admin.locator('tr[data-label="糖尿病外来A"]').waitFor();
        const tmp = admin.locator('tr[data-label="一時グループ"]');
        await tmp.getByRole('button', { name: '削除: 一時グループ' }).click();
        await tmp.getByRole('alertdialog').getByRole('button', { name: '削除', exact: true }).click();
        await tmp.waitFor({ state: 'detached' });
        const groups = await api('GET', `/orgs/${ctx.orgId}/groups`, 200, {
            token: await admin.evaluate(() => sessionStorage.getItem('phr.console.token')),
        });
        assert(groups.items.map((g) => g.name).join() === '糖尿病外来A', 'groups on the server differ');
        // a duplicate name is refused in words
        await admin.getByLabel('カテゴリ: 氏名').fill('要注意');
        await admin.locator('.labels').nth(1).getByRole('button', { name: '作成' }).click();
        await admin.getByRole('alert').filter({ hasText: '同じ名前' }).waitFor();
    });

    await check('admin: invitations: create (large code, JST expiry), list, cancel', async () => {
        await admin.getByRole('link', { name: '招待コード' }).click();
        await admin.getByRole('button', { name: '招待コードを発行' }).click();
        const card = admin.locator('.invitation-card');
        await card.waitFor();
        ctx.code = await card.locator('.code').getAttribute('data-code');
        assert(/^[2-9A-HJKMNP-Z]{8}$/.test(ctx.code), `code ${ctx.code}`);
        const size = await card.locator('.code').evaluate((e) => parseFloat(getComputedStyle(e).fontSize));
        assert(size >= 32, `code font ${size}px`);
        const text = await card.textContent();
        const exp = /(\d{4})\/(\d{2})\/(\d{2}) (\d{2}):(\d{2}) JST/.exec(text);
        assert(exp, `no JST expiry in "${text}"`);
        const shown = Date.UTC(+exp[1], +exp[2] - 1, +exp[3], +exp[4] - 9, +exp[5]);
        const days = (shown - Date.now()) / 86400e3;
        assert(days > 6.9 && days < 7.01, `expiry ${days} days away`);
        await shot(admin, 'invitations');
        await admin.getByLabel('メモ').fill('キャンセル用');
        await admin.getByRole('button', { name: '招待コードを発行' }).click();
        await admin.locator('tr', { hasText: 'キャンセル用' }).waitFor();
        assert(await admin.locator('table.invitations tbody tr').count() === 2, 'two open invitations');
        const row = admin.locator('tr', { hasText: 'キャンセル用' });
        await row.getByRole('button', { name: /^取り消す:/ }).click();
        await row.getByRole('alertdialog').getByRole('button', { name: '取り消す', exact: true }).click();
        await row.waitFor({ state: 'detached' });
        const open = await api('GET', `/orgs/${ctx.orgId}/invitations`, 200, {
            token: await admin.evaluate(() => sessionStorage.getItem('phr.console.token')),
        });
        assert(open.items.length === 1 && open.items[0].code === ctx.code, 'server list differs');
    });

    await check('patient (API): registers, verifies by the mailed link, links with the code, records', async () => {
        const email = uniqueEmail('cpat');
        const reg = await api('POST', '/auth/register', 201, {
            body: { email, password: PATIENT_PW, name: '山田 一郎' },
        });
        ctx.patientId = reg.id;
        const tok = await mailed(email, /[?&#]token=([A-Za-z0-9_-]{43})/);
        await api('POST', '/auth/verify-email', 204, { body: { token: tok } });
        const s = await api('POST', '/auth/login', 200, { body: { email, password: PATIENT_PW } });
        ctx.patientToken = s.token;
        await api('POST', '/me/links', 201, { token: s.token, body: { code: ctx.code.toLowerCase() } });
        // blood pressure on 5 different JST days, two of them twice (one bucket each day)
        ctx.bpDays = [1, 3, 4, 8, 12];
        const now = Date.now();
        for (const d of ctx.bpDays) {
            const at = new Date(now - d * 86400e3);
            at.setUTCHours(0, 30, 0, 0); // 09:30 JST
            await api('POST', '/me/records', 201, {
                token: s.token,
                body: { type: 'blood_pressure', measured_at: at.toISOString(), values: { systolic: 120 + d, diastolic: 80 - d } },
            });
            if (d === 3 || d === 8) {
                at.setUTCHours(10, 0, 0, 0); // 19:00 JST, same JST day
                await api('POST', '/me/records', 201, {
                    token: s.token,
                    body: { type: 'blood_pressure', measured_at: at.toISOString(), values: { systolic: 140, diastolic: 90 } },
                });
            }
        }
        // the months those JST days fall in (for the month bucket), all and within 7 days
        const months = (ds) => new Set(ds.map((d) => {
            const at = new Date(now - d * 86400e3);
            at.setUTCHours(0, 30, 0, 0);
            return new Date(at.getTime() + 9 * 3600e3).toISOString().slice(0, 7);
        })).size;
        ctx.bpMonths = months(ctx.bpDays);
        ctx.bpMonths7 = months(ctx.bpDays.filter((d) => d < 7));
    });

    staff = await newPage(browser);

    await check('staff: signs in with the mailed password, changes it, sees the patient', async () => {
        await staff.goto(`${GATEWAY}/`);
        await signIn(staff, ctx.staffEmail, ctx.staffInitial);
        await forcedChange(staff, ctx.staffInitial);
        const row = staff.locator(`tr[data-patient="${ctx.patientId}"]`);
        await row.waitFor();
        const text = await row.textContent();
        assert(text.includes('山田 一郎') && text.includes('121/79 mmHg'), `row: ${text}`);
        assert(!(await staff.getByRole('link', { name: 'スタッフ管理' }).count()), 'staff sees the admin page');
        noProblems(staff);
    });

    await check('staff: assigns the patient to the group on the patient page, filters by group', async () => {
        await staff.getByRole('link', { name: '山田 一郎' }).click();
        await staff.getByRole('heading', { name: '山田 一郎' }).waitFor();
        await staff.getByLabel('グループ', { exact: true }).selectOption({ label: '糖尿病外来A' });
        await staff.locator('.membership').first().getByRole('button', { name: '追加' }).click();
        await staff.getByRole('button', { name: '外す: 糖尿病外来A' }).waitFor();
        await staff.getByRole('link', { name: '患者' }).click();
        await staff.getByLabel('グループ').selectOption({ label: '糖尿病外来A' });
        await staff.getByRole('button', { name: '検索' }).click();
        await staff.locator(`tr[data-patient="${ctx.patientId}"]`).filter({ hasText: '糖尿病外来A' }).waitFor();
        await staff.getByLabel('グループ').selectOption({ label: 'すべて' });
        await staff.getByLabel('カテゴリ').selectOption({ label: '要注意' });
        await staff.getByRole('button', { name: '検索' }).click();
        await staff.getByText('該当する患者はいません。').waitFor();
        await staff.getByLabel('カテゴリ').selectOption({ label: 'すべて' });
        await staff.getByLabel('氏名で検索').fill('山田');
        await staff.getByRole('button', { name: '検索' }).click();
        await staff.locator(`tr[data-patient="${ctx.patientId}"]`).waitFor();
        await staff.getByLabel('氏名で検索').fill('存在しない名前');
        await staff.getByRole('button', { name: '検索' }).click();
        await staff.getByText('該当する患者はいません。').waitFor();
    });

    await check('staff: the blood pressure chart has one point per day, then per month', async () => {
        await staff.goto(`${GATEWAY}/patients/${ctx.patientId}`);
        const box = staff.locator('.chart-box');
        await box.waitFor();
        await staff.locator('.chart-box canvas').waitFor();
        assert(await box.getAttribute('data-points') === String(ctx.bpDays.length), 'day points');
        assert(await staff.locator('table.chart-data tbody tr').count() === ctx.bpDays.length, 'data rows');
        const day3 = await staff.locator('table.chart-data tbody tr').nth(3).locator('td').allTextContents();
        // 3 days ago: 123/77 and 140/90, means 131.5 and 83.5
        assert(day3[1] === '132' && day3[2] === '84', `mean of day 3: ${day3}`);
        assert(await staff.locator('.u-legend').filter({ hasText: '収縮期' }).count() === 1, 'legend');
        await shot(staff, 'patient');
        await staff.getByLabel('集計単位').selectOption('month');
        await eventually(async () => (await box.getAttribute('data-points')) === String(ctx.bpMonths), 'month points', 5000);
        await staff.getByLabel('期間').selectOption('7');
        await eventually(async () => (await box.getAttribute('data-points')) === String(ctx.bpMonths7),
            '7-day month points', 5000);
        await staff.getByLabel('集計単位').selectOption('day');
        await eventually(async () => (await box.getAttribute('data-points')) === '3', '7-day points', 5000);
        assert(await staff.locator('table.records tbody tr').count() === 7, 'records table rows');
    });

    await check('staff: adds a clinic HbA1c (range checked in the form, the API error names the field)', async () => {
        await staff.getByLabel('種類').selectOption('hba1c');
        const value = staff.getByLabel(/^値/);
        await value.fill('99');
        await staff.getByLabel('メモ').fill('院内検査');
        await staff.getByRole('button', { name: '保存' }).click();
        assert(await value.evaluate((e) => e.validity.rangeOverflow), 'the catalogue range is not in the form');
        await value.fill('6.8');
        const when = staff.getByLabel('測定日時 (JST)');
        const good = await when.inputValue();
        await when.fill(new Date(Date.now() + (9 + 72) * 3600e3).toISOString().slice(0, 16));
        await staff.getByRole('button', { name: '保存' }).click();
        await staff.getByRole('alert').filter({ hasText: 'measured_at' }).waitFor();
        await when.fill(good);
        await staff.getByRole('button', { name: '保存' }).click();
        await staff.getByRole('status').filter({ hasText: '保存しました' }).waitFor();
        await staff.locator('table.records tbody tr').filter({ hasText: '6.8 %' }).filter({ hasText: 'clinic' }).waitFor();
        const mine = await api('GET', '/me/records?type=hba1c', 200, { token: ctx.patientToken });
        assert(mine.items.length === 1 && mine.items[0].source === 'clinic' && mine.items[0].values.value === 6.8 &&
            mine.items[0].note === '院内検査' && mine.items[0].org_id === ctx.orgId, 'the patient does not see it');
        noProblems(staff);
    });

    await check('admin: promotes the staff member, seats unchanged', async () => {
        await admin.getByRole('link', { name: 'スタッフ管理' }).click();
        const row = admin.locator(`tr[data-staff="${ctx.staffEmail}"]`);
        await row.filter({ hasText: '有効' }).waitFor();
        await row.getByRole('combobox').selectOption('admin');
        await row.getByRole('button', { name: '権限を変更' }).click();
        await admin.getByRole('status').filter({ hasText: '保存しました' }).waitFor();
        await admin.locator('.seats').filter({ hasText: '2 / 3' }).waitFor();
        const list = await api('GET', `/orgs/${ctx.orgId}/staff`, 200, {
            token: await admin.evaluate(() => sessionStorage.getItem('phr.console.token')),
        });
        const m = list.items.find((s) => s.email === ctx.staffEmail);
        ctx.staffId = m?.id;
        assert(m && m.role === 'admin' && m.last_login_at, 'role or last login not on the server');
        await shot(admin, 'staff');
    });

    await check('staff: the role change ended their session; signed in again they are admin', async () => {
        await staff.getByRole('link', { name: 'アカウント' }).click();
        await staff.getByRole('status').filter({ hasText: 'もう一度ログイン' }).waitFor();
        assert(await staff.evaluate(() => sessionStorage.getItem('phr.console.token')) === null, 'token kept');
        await signIn(staff, ctx.staffEmail, NEW_PW);
        await staff.getByRole('link', { name: 'スタッフ管理' }).waitFor();
    });

    await check('account: TOTP enrolment with a local QR code, recovery codes once, MFA sign-in', async () => {
        await staff.getByRole('link', { name: 'アカウント' }).click();
        await staff.getByRole('button', { name: '認証アプリを登録する' }).click();
        const img = staff.locator('img.qr');
        await img.waitFor();
        const src = await img.getAttribute('src');
        assert(src.startsWith('data:image/svg+xml;base64,'), 'QR not drawn locally');
        assert(Buffer.from(src.split(',')[1], 'base64').toString().includes('<svg'), 'QR is not an SVG');
        const secret = await staff.locator('code.secret').textContent();
        await staff.getByLabel('認証コード（6桁）').fill(totp(secret));
        ctx.totpSecret = secret;
        ctx.totpStep = Math.floor(Date.now() / 30000);
        await staff.getByRole('button', { name: '確認' }).click();
        await staff.locator('.recovery li').first().waitFor();
        const codes = await staff.locator('.recovery li').allTextContents();
        assert(codes.length === 10, `${codes.length} recovery codes`);
        await shot(staff, 'account-recovery');
        await staff.getByRole('button', { name: '閉じる' }).click();
        await staff.getByText('二要素認証は有効です。').waitFor();
        assert(await staff.locator('.recovery').count() === 0, 'recovery codes still shown');
        // sign out, then in again: the code field, a recovery code works
        await staff.getByRole('button', { name: 'ログアウト' }).click();
        await signIn(staff, ctx.staffEmail, NEW_PW);
        await staff.getByLabel('認証コード（6桁）').waitFor();
        await staff.getByLabel('リカバリーコードを使う').check();
        await staff.getByLabel('リカバリーコード', { exact: true }).fill(codes[0]);
        await staff.getByRole('button', { name: '確認' }).click();
        await staff.getByRole('heading', { name: '患者' }).waitFor();
        const me = await api('GET', '/auth/session', 200, {
            token: await staff.evaluate(() => sessionStorage.getItem('phr.console.token')),
        });
        assert(me.mfa === 'recovery_code' && me.mfa_methods.includes('totp'), `mfa ${me.mfa}`);
    });

    await check('sign-in with the authenticator code (the next time step: a code is accepted once)', async () => {
        await staff.getByRole('button', { name: 'ログアウト' }).click();
        await signIn(staff, ctx.staffEmail, NEW_PW);
        const field = staff.getByLabel('認証コード（6桁）');
        await field.waitFor();
        await eventually(async () => Math.floor(Date.now() / 30000) > ctx.totpStep, 'the next TOTP step', 35000);
        await field.fill(totp(ctx.totpSecret));
        await staff.getByRole('button', { name: '確認' }).click();
        await staff.getByRole('heading', { name: '患者' }).waitFor();
    });

    await check('admin: resets the two-factor of the staff member (confirmed); their session ends', async () => {
        await admin.getByRole('link', { name: '患者' }).click();
        await admin.getByRole('link', { name: 'スタッフ管理' }).click();
        const row = admin.locator(`tr[data-staff="${ctx.staffEmail}"]`);
        await row.getByRole('button', { name: /^二要素認証をリセット/ }).click();
        await row.getByRole('alertdialog').getByRole('button', { name: '二要素認証をリセット', exact: true }).click();
        await admin.getByRole('status').filter({ hasText: '保存しました' }).waitFor();
        await row.filter({ hasText: '未設定' }).waitFor();
        await staff.getByRole('link', { name: '招待コード' }).click();
        await staff.getByRole('button', { name: 'ログイン' }).waitFor();
        // no code asked any more
        await signIn(staff, ctx.staffEmail, NEW_PW);
        await staff.getByRole('heading', { name: '患者' }).waitFor();
        await staff.getByRole('link', { name: 'アカウント' }).click();
        await staff.getByRole('button', { name: '認証アプリを登録する' }).waitFor();
    });

    await check('admin: unlocks a staff member locked out by wrong passwords', async () => {
        for (let i = 0; i < 5; i++) {
            await api('POST', '/auth/login', 401, { body: { email: ctx.staffEmail, password: 'Wrong-pass-123' } });
        }
        await api('POST', '/auth/login', 401, { body: { email: ctx.staffEmail, password: NEW_PW } });
        await admin.getByRole('link', { name: '患者' }).click();
        await admin.getByRole('link', { name: 'スタッフ管理' }).click();
        const row = admin.locator(`tr[data-staff="${ctx.staffEmail}"]`);
        await row.filter({ hasText: 'ロック中' }).waitFor();
        await row.getByRole('button', { name: 'ロック解除' }).click();
        await row.getByRole('button', { name: 'ロック解除' }).waitFor({ state: 'detached' });
        await api('POST', '/auth/login', 200, { body: { email: ctx.staffEmail, password: NEW_PW } });
    });

    await check('account: own sessions listed, another one revoked', async () => {
        const other = await api('POST', '/auth/login', 200, { body: { email: ctx.adminEmail, password: NEW_PW } });
        await admin.getByRole('link', { name: 'アカウント' }).click();
        const rows = admin.locator('table.sessions tbody tr');
        await eventually(async () => (await rows.count()) >= 2, 'two sessions', 5000);
        await admin.locator(`tr[data-session]`).filter({ hasText: 'この端末' }).waitFor();
        const before = await rows.count();
        await admin.getByRole('button', { name: '無効にする' }).first().click();
        await eventually(async () => (await rows.count()) === before - 1, 'one session fewer', 5000);
        const r = await http('GET', '/api/v1/auth/session', { token: other.token });
        assert(r.status === 401, `the revoked session answers ${r.status}`);
        noProblems(admin);
    });

    await check('admin: the audit log lists the earlier actions in JST; filters narrow it; export', async () => {
        const token = await admin.evaluate(() => sessionStorage.getItem('phr.console.token'));
        const events = (q) => api('GET', `/orgs/${ctx.orgId}/audit-events?limit=200&${q}`, 200, { token });
        // the services' outbox relays deliver the events: wait for them on the API first
        const staffNew = await eventually(async () => (await events('action=auth.staff.create')).items
            .find((e) => e.outcome.result === 'success' && e.target.id === ctx.staffId), 'auth.staff.create');
        await eventually(async () => (await events('action=records.group.create')).items.length === 2,
            'two records.group.create');
        await admin.getByRole('link', { name: '監査ログ' }).click();
        await admin.getByRole('heading', { name: '監査ログ' }).waitFor();
        const rows = admin.locator('table.audit tbody tr');
        const row = admin.locator(`tr[data-event="${staffNew.event_id}"]`);
        await row.filter({ hasText: '管理 花子' }).filter({ hasText: 'account: 看護 太郎' }).waitFor();
        const at = new Date(Date.parse(staffNew.occurred_at) + 9 * 3600e3).toISOString();
        const want = `${at.slice(0, 10).replaceAll('-', '/')} ${at.slice(11, 16)} JST`;
        const cells = await row.locator('td').allTextContents();
        assert(cells[0] === want && cells[2] === 'auth.staff.create' && cells[4] === '成功',
            `row ${cells.join(' | ')} (want ${want})`);
        const all = await rows.count();
        // the action prefix: only the group events, the same as the API's
        await admin.getByLabel('操作', { exact: true }).fill('records.group.');
        await admin.getByRole('button', { name: '検索' }).click();
        const grp = await events('action=records.group.');
        await eventually(async () => (await rows.count()) === grp.items.length, 'the group rows', 5000);
        const acts = await rows.evaluateAll((rs) => rs.map((r) => r.dataset.action));
        assert(acts.every((a) => a.startsWith('records.group.')) && acts.includes('records.group.create') &&
            acts.includes('records.group.delete') && acts.length < all, `${acts} of ${all}`);
        const groups = await api('GET', `/orgs/${ctx.orgId}/groups`, 200, { token });
        await admin.locator('tr[data-action="records.group.create"]')
            .filter({ hasText: `group: ${groups.items[0].id}` }).waitFor();
        // the actor: the staff member's own events only
        await admin.getByLabel('操作', { exact: true }).fill('');
        await admin.getByLabel('操作者').selectOption({ label: '看護 太郎' });
        await admin.getByRole('button', { name: '検索' }).click();
        const mine = await events(`actor=${ctx.staffId}`);
        await eventually(async () => (await rows.count()) === Math.min(mine.items.length, 50) &&
            (await rows.first().getAttribute('data-event')) === mine.items[0].event_id, 'the actor\'s rows', 5000);
        assert(await rows.filter({ hasText: '管理 花子' }).count() === 0, 'another actor\'s row');
        // a bad action is the API's error in words, naming the field
        await admin.getByLabel('操作', { exact: true }).fill('Not An Action');
        await admin.getByRole('button', { name: '検索' }).click();
        await admin.getByRole('alert').filter({ hasText: '入力内容を確認' }).filter({ hasText: 'action' }).waitFor();
        // all again: paged by cursor (50 a page), the next page holds other events
        await admin.getByLabel('操作', { exact: true }).fill('');
        await admin.getByLabel('操作者').selectOption({ label: 'すべて' });
        await admin.getByRole('button', { name: '検索' }).click();
        await eventually(async () => (await rows.count()) === 50, 'a full page', 5000);
        const first = await rows.evaluateAll((rs) => rs.map((r) => r.dataset.event));
        await admin.getByRole('button', { name: '次へ' }).click();
        await admin.getByRole('button', { name: '最初のページ' }).waitFor();
        await eventually(async () => !first.includes(await rows.first().getAttribute('data-event')), 'page 2', 5000);
        const second = await rows.evaluateAll((rs) => rs.map((r) => r.dataset.event));
        assert(second.length > 0 && second.every((id) => !first.includes(id)), 'page 2 repeats page 1');
        await admin.getByLabel('操作', { exact: true }).fill('auth.staff.');
        await admin.getByRole('button', { name: '検索' }).click();
        await row.waitFor();
        await shot(admin, 'audit');
        // the export: fetched with the bearer header, saved from a Blob (no token in a URL)
        const [dl] = await Promise.all([
            admin.waitForEvent('download'),
            admin.getByRole('button', { name: 'エクスポート（JSON Lines）' }).click(),
        ]);
        assert(dl.url().startsWith('blob:') && /^audit-.*\.jsonl$/.test(dl.suggestedFilename()), dl.url());
        const lines = fs.readFileSync(await dl.path(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
        const ev = lines.find((l) => l.record === 'event' && l.event_id === staffNew.event_id);
        assert(ev && ev.hash && ev.prev_hash && lines.every((l) => l.record !== 'event' ||
            l.actor.org_id === ctx.orgId || l.target.org_id === ctx.orgId), 'export content');
        noProblems(admin);
    });

    await check('admin: the month\'s access review (who read which patient), attested, errors in words', async () => {
        const token = await admin.evaluate(() => sessionStorage.getItem('phr.console.token'));
        await admin.getByRole('link', { name: 'アクセス権レビュー' }).click();
        const staffRow = admin.locator(`tr[data-review="${ctx.staffEmail}"]`);
        await staffRow.filter({ hasText: '今月昇格' }).waitFor();
        await eventually(async () => Number(await staffRow.locator('td.reads').getAttribute('data-count')) >= 1,
            'the staff member\'s reads', 5000);
        await staffRow.locator('td.reads').filter({ hasText: '山田 一郎' }).waitFor();
        assert(await staffRow.locator('td.attestation').textContent() === '未確認', 'attested already');
        // a month that has not begun: the API's 400, in words with the field
        const month = await admin.getByLabel('対象月').inputValue();
        await admin.getByLabel('対象月').fill('2099-01');
        await admin.getByRole('button', { name: '表示' }).click();
        await admin.getByRole('alert').filter({ hasText: '入力内容を確認' }).filter({ hasText: 'month' }).waitFor();
        await admin.getByLabel('対象月').fill(month);
        await admin.getByRole('button', { name: '表示' }).click();
        await staffRow.waitFor();
        await staffRow.getByLabel(/^判断:/).selectOption({ label: '変更' });
        await staffRow.getByLabel(/^コメント:/).fill('管理者は1名で十分');
        await admin.getByRole('button', { name: '確認結果を記録' }).click();
        await admin.getByRole('status').filter({ hasText: '確認結果を記録しました' }).waitFor();
        await staffRow.locator('td.attestation').filter({ hasText: '変更' }).filter({ hasText: '管理者は1名で十分' })
            .filter({ hasText: '管理 花子' }).waitFor();
        await shot(admin, 'access-review');
        const rv = await api('GET', `/orgs/${ctx.orgId}/access-review?month=${month}`, 200, { token });
        const line = rv.items.find((l) => l.email === ctx.staffEmail);
        const self = rv.items.find((l) => l.account_id === ctx.adminId);
        assert(line.attestation?.decision === 'change' && line.attestation.by === ctx.adminId &&
            self.attestation?.decision === 'keep', 'attestations on the server differ');
        noProblems(admin);
    });

    await check('accessibility: axe-core finds no serious/critical WCAG 2.1 A/AA violation (1280, 768 px)', async () => {
        const found = [];
        const signin = await newPage(browser);
        const pages = [ // name, route, heading, what shows the page has loaded
            ['patients', '/', '患者', 'table.patients'],
            ['patient', `/patients/${ctx.patientId}`, '血圧（収縮期・拡張期）', '.chart-box canvas'],
            ['invitations', '/invitations', '招待コード', 'text=有効な招待コードはありません。'],
            ['labels', '/labels', 'グループ・カテゴリ', 'tr[data-label]'],
            ['staff', '/staff', 'スタッフ', 'tr[data-staff]'],
            ['account', '/account', 'アカウント', 'tr[data-session]'],
            ['audit', '/audit', '監査ログ', 'tr[data-event]'],
            ['review', '/review', 'アクセス権レビュー', 'td.reads[data-count="1"]'],
        ];
        for (const [width, height] of [[1280, 800], [768, 1024]]) {
            await signin.setViewportSize({ width, height });
            await signin.goto(`${GATEWAY}/`);
            await signin.getByRole('button', { name: 'ログイン' }).waitFor();
            found.push(...await axeViolations(signin, `sign-in ${width}`));
            if (width === 1280) {
                // the scan itself works under the CSP: an unlabelled field is reported
                await signin.evaluate(() => document.querySelector('form').append(document.createElement('input')));
                const probe = await axeViolations(signin, 'probe');
                assert(probe.length === 1 && /^probe: label \(critical\)/.test(probe[0]), `probe: ${probe}`);
                await signin.reload();
                await signin.getByRole('button', { name: 'ログイン' }).waitFor();
            }
            await admin.setViewportSize({ width, height });
            for (const [name, to, heading, loaded] of pages) {
                await admin.goto(`${GATEWAY}${to}`);
                await admin.getByRole('heading', { name: heading, exact: true }).waitFor();
                await admin.locator(loaded).first().waitFor();
                found.push(...await axeViolations(admin, `${name} ${width}`));
                const wide = await admin.evaluate(() => document.documentElement.scrollWidth);
                if (wide > width) {
                    found.push(`${name} ${width}: the page is ${wide}px wide (horizontal scrolling)`);
                }
                if (width === 768 && (name === 'audit' || name === 'review')) {
                    await shot(admin, `${name}-768`);
                }
            }
        }
        await admin.setViewportSize({ width: 1280, height: 800 });
        noProblems(signin);
        await signin.context().close();
        noProblems(admin);
        assert(found.length === 0, `\n  ${found.join('\n  ')}`);
    });

    await check('forgot password: the request form, the e-mail goes out', async () => {
        const p = await newPage(browser);
        await p.goto(`${GATEWAY}/`);
        await p.getByRole('button', { name: 'パスワードをお忘れの方' }).click();
        await p.getByLabel('メールアドレス').fill(ctx.adminEmail);
        await p.getByRole('button', { name: '再設定メールを送る' }).click();
        await p.getByRole('status').filter({ hasText: '再設定用のメール' }).waitFor();
        await mailed(ctx.adminEmail, /[?&#]token=([A-Za-z0-9_-]{43})/);
        await p.context().close();
    });

    await check('English switch, 768 px wide without horizontal scrolling', async () => {
        await staff.setViewportSize({ width: 768, height: 1024 });
        await staff.getByRole('button', { name: 'English' }).click();
        await staff.getByRole('link', { name: 'Patients' }).click();
        await staff.getByRole('heading', { name: 'Patients' }).waitFor();
        await staff.getByRole('link', { name: '山田 一郎' }).click();
        await staff.getByRole('heading', { name: 'Blood pressure (systolic / diastolic)' }).waitFor();
        await staff.locator('.chart-box canvas').waitFor();
        const over = await staff.evaluate(() => document.documentElement.scrollWidth);
        assert(over <= 768, `page is ${over}px wide`);
        await shot(staff, 'patient-768-en');
        await staff.getByRole('button', { name: '日本語' }).click();
        await staff.getByRole('heading', { name: '血圧（収縮期・拡張期）' }).waitFor();
        noProblems(staff);
    });

    await check('keyboard: Tab reaches the sign-in fields in order with a visible focus', async () => {
        const p = await newPage(browser);
        await p.goto(`${GATEWAY}/`);
        await p.getByRole('button', { name: 'ログイン' }).waitFor();
        const seen = [];
        for (let i = 0; i < 4; i++) {
            await p.keyboard.press('Tab');
            seen.push(await p.evaluate(() => {
                const e = document.activeElement;
                const o = getComputedStyle(e).outlineStyle;
                return `${e.id || e.textContent}:${o}`;
            }));
        }
        assert(seen.includes('email:solid') && seen.includes('password:solid'), seen.join(' '));
        await p.context().close();
    });

    await check('idle timeout: a warning a minute before idle_expires_at, then back to sign-in', async () => {
        const p = await newPage(browser);
        // Every answered API call restarts the console's idle window (idle.ts): the page's
        // own calls must all be answered before the clock is moved, or one answered after the
        // warning would push the sign-out past the second fast-forward.
        const inflight = new Set();
        p.on('request', (r) => inflight.add(r));
        p.on('requestfinished', (r) => inflight.delete(r));
        p.on('requestfailed', (r) => inflight.delete(r));
        await p.clock.install();
        await p.goto(`${GATEWAY}/`);
        await signIn(p, ctx.adminEmail, NEW_PW);
        await p.getByRole('heading', { name: '患者' }).waitFor();
        for (let quiet = 0, polls = 0; quiet < 5 && polls < 300; polls++) {
            quiet = inflight.size === 0 ? quiet + 1 : 0;
            await new Promise((done) => setTimeout(done, 100));
        }
        assert(inflight.size === 0, `${inflight.size} requests of the page still open`);
        const token = await p.evaluate(() => sessionStorage.getItem('phr.console.token'));
        const s = await api('GET', '/auth/session', 200, { token });
        const left = Date.parse(s.idle_expires_at) - Date.now();
        await p.clock.fastForward(Math.max(left - 50_000, 0));
        await p.getByRole('alertdialog').filter({ hasText: 'まもなく自動的にログアウト' }).waitFor();
        await p.clock.fastForward(70_000);
        await p.getByRole('button', { name: 'ログイン' }).waitFor();
        await p.getByRole('status').filter({ hasText: '一定時間操作がなかったため' }).waitFor();
        assert(await p.evaluate(() => sessionStorage.getItem('phr.console.token')) === null, 'token kept');
        const r = await http('GET', '/api/v1/auth/session', { token });
        assert(r.status === 401, `the idle session still answers ${r.status}`);
        await p.context().close();
    });
} finally {
    await close();
}

process.exit(summary());
