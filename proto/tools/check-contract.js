#!/usr/bin/env node
// check-contract.js - project rules the OpenAPI linter cannot know.
//
// For each service document (proto/<service>.yaml):
//  - every /api/v1/ path is routed by the gateway to that same service (the routing table of
//    proto/README.md, the same regular expressions as deploy/nginx);
//  - every other path is /internal/v1/..., /livez, /readyz or /metrics;
//  - every operation has x-phr-access; /internal/ operations require serviceCaller +
//    serviceCredential and list x-phr-callers; public (security: []) operations say so;
//  - no method + path is defined by two documents;
//  - the routes of the first milestone are present and marked x-phr-status: implemented;
//  - README.md lists every operation with its access and status, and nothing else.
// Exits 1 and names each problem, 0 when all hold.
'use strict';

const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');

const SERVICES = ['auth', 'records', 'notification', 'audit'];
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

// Gateway routing table: service -> path regexps ({param} segments are matched as one segment).
const ROUTES = {
    auth: [
        /^\/api\/v1\/auth\//,
        /^\/api\/v1\/admin\/orgs(\/|$)/,
        /^\/api\/v1\/orgs\/[^/]+$/,
        /^\/api\/v1\/orgs\/[^/]+\/staff(\/|$)/,
    ],
    records: [
        /^\/api\/v1\/me\/(?!access-log$)/,
        /^\/api\/v1\/records\//,
        /^\/api\/v1\/orgs\/[^/]+\/(invitations|patients|groups|categories)(\/|$)/,
    ],
    notification: [
        /^\/api\/v1\/admin\/(notices|incidents)(\/|$)/,
        /^\/api\/v1\/orgs\/[^/]+\/incidents(\/|$)/,
        /^\/api\/v1\/webhooks\//,
        /^\/api\/v1\/notifications\//,
    ],
    audit: [
        /^\/api\/v1\/audit\//,
        /^\/api\/v1\/admin\/(audit|audit-events|access-review)(\/|$)/,
        /^\/api\/v1\/orgs\/[^/]+\/(audit-events|access-review)(\/|$)/,
        /^\/api\/v1\/me\/access-log$/,
    ],
};

const NOT_ROUTED = [/^\/internal\/v1\/[a-z]/, /^\/livez$/, /^\/readyz$/, /^\/metrics$/];

const PROBES = ['get /livez', 'get /readyz', 'get /metrics'];
const IMPLEMENTED = {
    auth: [
        'get /api/v1/auth/password-policy',
        'delete /api/v1/auth/mfa/totp',
        'delete /api/v1/auth/sessions/{session_id}',
        'delete /api/v1/orgs/{org_id}/staff/{account_id}',
        'get /api/v1/admin/orgs',
        'get /api/v1/auth/session',
        'get /api/v1/auth/sessions',
        'get /api/v1/orgs/{org_id}',
        'get /api/v1/orgs/{org_id}/staff',
        'get /internal/v1/accounts',
        'get /internal/v1/contacts',
        'get /internal/v1/orgs/{org_id}/admins',
        'patch /api/v1/admin/orgs/{org_id}',
        'patch /api/v1/orgs/{org_id}/staff/{account_id}',
        'post /api/v1/admin/orgs',
        'post /api/v1/auth/login',
        'post /api/v1/auth/login/mfa',
        'post /api/v1/auth/login/mfa/sms',
        'post /api/v1/auth/logout',
        'post /api/v1/auth/mfa/sms/confirm',
        'post /api/v1/auth/mfa/sms/enroll',
        'post /api/v1/auth/mfa/totp/confirm',
        'post /api/v1/auth/mfa/totp/enroll',
        'post /api/v1/auth/password',
        'post /api/v1/auth/password-reset/confirm',
        'post /api/v1/auth/password-reset/request',
        'post /api/v1/auth/register',
        'post /api/v1/auth/sessions/revoke-others',
        'post /api/v1/auth/verify-email',
        'post /api/v1/auth/withdraw',
        'post /api/v1/orgs/{org_id}/staff',
        'post /api/v1/orgs/{org_id}/staff/{account_id}/reset-mfa',
        'post /api/v1/orgs/{org_id}/staff/{account_id}/unlock',
        'post /internal/v1/accounts/lookup',
        'post /internal/v1/accounts/{account_id}/verify-password',
        'post /internal/v1/orgs/lookup',
        'post /internal/v1/hygiene/run',
        ...PROBES,
    ],
    records: [
        'get /api/v1/records/types',
        'post /internal/v1/retention/run',
        'post /internal/v1/patients/{patient_id}/withdrawal',
        'get /api/v1/orgs/{org_id}/patients/{patient_id}/records/summary',
        'post /api/v1/orgs/{org_id}/patients/{patient_id}/records',
        'get /api/v1/orgs/{org_id}/patients/{patient_id}/records',
        'post /api/v1/me/deletion',
        'post /api/v1/me/import',
        'get /api/v1/me/export',
        'patch /api/v1/me/records/{record_id}',
        'delete /api/v1/me/records/{record_id}',
        'get /api/v1/me/records/{record_id}',
        'get /api/v1/me/records/summary',
        'post /api/v1/me/records',
        'get /api/v1/me/records',
        // sharing, the patient list, groups and categories (issue 4)
        'get /api/v1/me/links',
        'post /api/v1/me/links',
        'delete /api/v1/me/links/{org_id}',
        'get /api/v1/orgs/{org_id}/invitations',
        'post /api/v1/orgs/{org_id}/invitations',
        'delete /api/v1/orgs/{org_id}/invitations/{invitation_id}',
        'get /api/v1/orgs/{org_id}/patients',
        'get /api/v1/orgs/{org_id}/groups',
        'post /api/v1/orgs/{org_id}/groups',
        'patch /api/v1/orgs/{org_id}/groups/{group_id}',
        'delete /api/v1/orgs/{org_id}/groups/{group_id}',
        'put /api/v1/orgs/{org_id}/groups/{group_id}/patients/{patient_id}',
        'delete /api/v1/orgs/{org_id}/groups/{group_id}/patients/{patient_id}',
        'get /api/v1/orgs/{org_id}/categories',
        'post /api/v1/orgs/{org_id}/categories',
        'patch /api/v1/orgs/{org_id}/categories/{category_id}',
        'delete /api/v1/orgs/{org_id}/categories/{category_id}',
        'put /api/v1/orgs/{org_id}/categories/{category_id}/patients/{patient_id}',
        'delete /api/v1/orgs/{org_id}/categories/{category_id}/patients/{patient_id}',
        ...PROBES,
    ],
    notification: [
        'get /api/v1/notifications/kinds',
        // webhooks, notices and incidents (issue 5)
        'post /api/v1/webhooks/sendgrid',
        'post /api/v1/webhooks/twilio',
        'get /api/v1/admin/notices',
        'post /api/v1/admin/notices',
        'get /api/v1/admin/notices/{notice_id}',
        'get /api/v1/admin/incidents',
        'post /api/v1/admin/incidents',
        'get /api/v1/admin/incidents/{incident_id}',
        'get /api/v1/orgs/{org_id}/incidents',
        // submit and status (issue 5)
        'post /internal/v1/notifications',
        'get /internal/v1/notifications/{notification_id}',
        ...PROBES,
    ],
    audit: [
        'get /api/v1/audit/public-key',
        // query and access review (issue 6)
        'get /api/v1/admin/audit-events',
        'get /api/v1/orgs/{org_id}/audit-events',
        'get /api/v1/orgs/{org_id}/audit-events/export',
        'get /api/v1/me/access-log',
        'get /api/v1/orgs/{org_id}/access-review',
        'post /api/v1/orgs/{org_id}/access-review/{month}/attestations',
        'get /api/v1/admin/access-review',
        'post /api/v1/admin/access-review/{month}/attestations',
        // ingest, verification (issue 6)
        'post /internal/v1/events',
        'get /api/v1/admin/audit/verify',
        'post /internal/v1/retention/archive',
        ...PROBES,
    ],
};

const PUBLIC_ACCESS = ['public', 'probe', 'provider-signature'];
const ACCESS = new Set([
    'public', 'probe', 'service', 'provider-signature', 'session', 'session-changed-password',
    'patient', 'staff-or-operator', 'org-staff', 'org-admin', 'org-admin-recent-auth', 'operator',
    'operator-recent-auth',
]);

function owners(p) {
    const concrete = p.replace(/\{[^}/]+\}/g, 'x');
    return SERVICES.filter((s) => ROUTES[s].some((re) => re.test(concrete)));
}

function main() {
    const dir = path.resolve(process.argv[2] || path.join(__dirname, '..'));
    const problems = [];
    const seen = new Map();
    const documented = new Map();
    let ops = 0;

    for (const svc of SERVICES) {
        const file = path.join(dir, `${svc}.yaml`);
        let doc;
        try {
            doc = yaml.load(fs.readFileSync(file, 'utf8'));
        } catch (e) {
            problems.push(`${svc}.yaml: cannot read: ${e.message}`);
            continue;
        }
        const servers = (doc.servers || []).map((s) => s.url);
        if (!servers.includes('https://127.0.0.1:8443')) {
            problems.push(`${svc}.yaml: servers must list https://127.0.0.1:8443`);
        }
        const implemented = new Set();
        for (const [p, item] of Object.entries(doc.paths || {})) {
            if (p.startsWith('/api/')) {
                const own = owners(p);
                if (own.length !== 1 || own[0] !== svc) {
                    problems.push(`${svc}.yaml: ${p} is routed by the gateway to ` +
                                  `[${own.join(', ') || 'nothing'}], not ${svc}`);
                }
            } else if (!NOT_ROUTED.some((re) => re.test(p))) {
                problems.push(`${svc}.yaml: ${p} is neither /api/v1/, /internal/v1/ nor a probe`);
            }
            for (const m of METHODS) {
                const op = item[m];
                if (!op) {
                    continue;
                }
                ops++;
                const key = `${m} ${p}`;
                if (seen.has(key) && !NOT_ROUTED.slice(1).some((re) => re.test(p))) {
                    problems.push(`${svc}.yaml: ${key} is also defined in ${seen.get(key)}.yaml`);
                }
                seen.set(key, svc);
                const access = op['x-phr-access'];
                if (!ACCESS.has(access)) {
                    problems.push(`${svc}.yaml: ${key}: x-phr-access missing or unknown ` +
                                  `(${access})`);
                }
                const sec = op.security !== undefined ? op.security : doc.security;
                const isPublic = Array.isArray(sec) && sec.length === 0;
                if (p.startsWith('/internal/')) {
                    const ok = Array.isArray(sec) && sec.length === 1 &&
                        'serviceCaller' in sec[0] && 'serviceCredential' in sec[0];
                    if (!ok || access !== 'service') {
                        problems.push(`${svc}.yaml: ${key}: internal routes need security ` +
                                      'serviceCaller + serviceCredential and x-phr-access service');
                    }
                    if (!Array.isArray(op['x-phr-callers']) || op['x-phr-callers'].length === 0) {
                        problems.push(`${svc}.yaml: ${key}: x-phr-callers missing`);
                    }
                } else if (isPublic !== PUBLIC_ACCESS.includes(access)) {
                    problems.push(`${svc}.yaml: ${key}: security [] must go with a public ` +
                                  `x-phr-access and vice versa (${access})`);
                }
                documented.set(`${svc} ${key}`,
                               `${access} ${op['x-phr-status'] === 'implemented' ? 'implemented'
                                                                               : 'planned'}`);
                if (op['x-phr-status'] === 'implemented') {
                    implemented.add(key);
                } else if (op['x-phr-status'] !== undefined) {
                    problems.push(`${svc}.yaml: ${key}: x-phr-status is only "implemented"`);
                }
            }
        }
        const want = new Set(IMPLEMENTED[svc]);
        for (const k of want) {
            if (!implemented.has(k)) {
                problems.push(`${svc}.yaml: ${k} must exist and be marked ` +
                              'x-phr-status: implemented');
            }
        }
        for (const k of implemented) {
            if (!want.has(k)) {
                problems.push(`${svc}.yaml: ${k} is marked implemented; update check-contract.js ` +
                              'and README.md together');
            }
        }
    }

    // README.md "Routes": one row per operation, "| METHOD | `path` | access | status |".
    const readme = path.join(dir, 'README.md');
    const listed = new Map();
    let section = null;
    for (const line of fs.readFileSync(readme, 'utf8').split('\n')) {
        const h = /^### (\w+)\s*$/.exec(line);
        if (h) {
            section = SERVICES.includes(h[1]) ? h[1] : null;
            continue;
        }
        const r = /^\| ([A-Z]+) \| `([^`]+)` \| ([a-z-]+) \| (implemented|planned) \|$/.exec(line);
        if (section && r) {
            listed.set(`${section} ${r[1].toLowerCase()} ${r[2]}`, `${r[3]} ${r[4]}`);
        }
    }
    for (const [k, v] of documented) {
        if (!listed.has(k)) {
            problems.push(`README.md: no row for ${k} (${v})`);
        } else if (listed.get(k) !== v) {
            problems.push(`README.md: ${k} is "${listed.get(k)}" there but "${v}" in the document`);
        }
    }
    for (const k of listed.keys()) {
        if (!documented.has(k)) {
            problems.push(`README.md: row ${k} is in no document`);
        }
    }

    for (const p of problems) {
        console.error(`contract: ${p}`);
    }
    if (problems.length > 0) {
        console.error(`contract: ${problems.length} problem(s)`);
        process.exit(1);
    }
    console.log(`contract: ${ops} operations in ${SERVICES.length} documents follow the routing ` +
                'table and access rules; README.md lists them');
}

main();
