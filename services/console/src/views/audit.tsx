// views/audit.tsx - admins only: the org's audit events (newest first) filtered by actor,
// action (exact or a prefix ending in "."), patient and JST days, paged by cursor; times
// in JST; the export (JSON Lines with the chain fields) fetched with the bearer header and
// saved through a Blob, so the token never goes into a URL.

import { useEffect, useState } from 'preact/hooks';
import { api, apiBlob, withQuery } from '../api';
import { t, type Key } from '../i18n';
import { jst, jstDayBound } from '../time';
import type { AuditEvent, Page, Patient, StaffMember } from '../types';
import { ErrorBox } from '../ui';

const PAGE = 50;
const ACTIONS = ['auth.', 'auth.login.', 'auth.staff.', 'records.', 'records.read', 'records.group.',
    'records.category.', 'records.invitation.', 'audit.'];

export interface People {
    staff: StaffMember[];
    patients: Patient[];
    name: (id: string | null | undefined) => string | null;
}

/** The org's staff and (first 200) patients, for names in place of account ids. */
export function usePeople(orgId: string, onError: (e: unknown) => void): People {
    const [staff, setStaff] = useState<StaffMember[]>([]);
    const [patients, setPatients] = useState<Patient[]>([]);
    useEffect(() => {
        api<Page<StaffMember>>('GET', `/orgs/${orgId}/staff?limit=200`)
            .then((r) => setStaff(r.items))
            .catch(onError);
        api<Page<Patient>>('GET', `/orgs/${orgId}/patients?limit=200`)
            .then((r) => setPatients(r.items))
            .catch(onError);
    }, [orgId]);
    const name = (id: string | null | undefined) =>
        staff.find((s) => s.id === id)?.name ?? patients.find((p) => p.patient_id === id)?.name ?? null;
    return { staff, patients, name };
}

const OUTCOME: Record<AuditEvent['outcome']['result'], Key> = {
    success: 'outcome_success',
    failure: 'outcome_failure',
    denied: 'outcome_denied',
};

export function Audit({ orgId }: { orgId: string }) {
    const [form, setForm] = useState({ actor: '', action: '', patient_id: '', from: '', to: '' });
    const [applied, setApplied] = useState(form);
    const [cursor, setCursor] = useState<string | null>(null);
    const [page, setPage] = useState<Page<AuditEvent> | null>(null);
    const [error, setError] = useState<unknown>(null);
    const people = usePeople(orgId, setError);

    const query = (q: typeof form) => ({
        actor: q.actor,
        action: q.action,
        patient_id: q.patient_id,
        from: q.from ? jstDayBound(q.from) : '',
        to: q.to ? jstDayBound(q.to, true) : '',
    });

    useEffect(() => {
        setError(null);
        api<Page<AuditEvent>>(
            'GET',
            withQuery(`/orgs/${orgId}/audit-events`, { ...query(applied), limit: PAGE, cursor }),
        )
            .then(setPage)
            .catch((e) => {
                setPage(null);
                setError(e);
            });
    }, [orgId, applied, cursor]);

    const submit = (e: Event) => {
        e.preventDefault();
        setCursor(null);
        setApplied({ ...form, action: form.action.trim() });
    };

    const save = async () => {
        setError(null);
        try {
            const { from, to } = query(applied);
            const blob = await apiBlob(withQuery(`/orgs/${orgId}/audit-events/export`, { from, to }));
            const url = URL.createObjectURL(blob);
            const a = document.createElement('a');
            a.href = url;
            a.download = `audit-${orgId}.jsonl`;
            a.click();
            setTimeout(() => URL.revokeObjectURL(url), 1000);
        } catch (err) {
            setError(err);
        }
    };

    const set = (k: keyof typeof form) => (e: Event) =>
        setForm({ ...form, [k]: (e.target as HTMLInputElement | HTMLSelectElement).value });

    const who = (ev: AuditEvent) => {
        const n = people.name(ev.actor.account_id);
        return n ?? `${ev.actor.kind}${ev.actor.account_id ? ` ${ev.actor.account_id.slice(0, 8)}` : ''}`;
    };
    const what = (ev: AuditEvent) => {
        const n = people.name(ev.target.type === 'patient' ? ev.target.id : ev.target.patient_id) ??
            people.name(ev.target.id);
        return n ? `${ev.target.type}: ${n}` : `${ev.target.type}: ${ev.target.id}`;
    };

    return (
        <section aria-labelledby="audit-title">
            <h1 id="audit-title">{t('nav_audit')}</h1>
            <form class="filters" role="search" aria-label={t('audit_filters')} onSubmit={submit}>
                <div class="field">
                    <label for="audit-actor">{t('actor')}</label>
                    <select id="audit-actor" value={form.actor} onChange={set('actor')}>
                        <option value="">{t('all')}</option>
                        {people.staff.map((s) => <option value={s.id}>{s.name}</option>)}
                    </select>
                </div>
                <div class="field">
                    <label for="audit-action">{t('action')}</label>
                    <input id="audit-action" list="audit-actions" value={form.action} maxLength={64}
                        aria-describedby="audit-action-hint" onInput={set('action')} />
                    <datalist id="audit-actions">
                        {ACTIONS.map((a) => <option value={a} />)}
                    </datalist>
                    <span id="audit-action-hint" class="hint">{t('action_hint')}</span>
                </div>
                <div class="field">
                    <label for="audit-patient">{t('patient')}</label>
                    <select id="audit-patient" value={form.patient_id} onChange={set('patient_id')}>
                        <option value="">{t('all')}</option>
                        {people.patients.map((p) => <option value={p.patient_id}>{p.name}</option>)}
                    </select>
                </div>
                <div class="field">
                    <label for="audit-from">{t('from_day')}</label>
                    <input id="audit-from" type="date" value={form.from} onInput={set('from')} />
                </div>
                <div class="field">
                    <label for="audit-to">{t('to_day')}</label>
                    <input id="audit-to" type="date" value={form.to} onInput={set('to')} />
                </div>
                <button type="submit" class="primary">{t('search')}</button>
                <button type="button" onClick={() => void save()}>{t('export')}</button>
            </form>
            <ErrorBox error={error} />
            {page && page.items.length === 0 && <p>{t('no_events')}</p>}
            {page && page.items.length > 0 && (
                <table class="audit">
                    <caption class="sr-only">{t('nav_audit')}</caption>
                    <thead>
                        <tr>
                            <th scope="col">{t('occurred_at')}</th>
                            <th scope="col">{t('actor')}</th>
                            <th scope="col">{t('action')}</th>
                            <th scope="col">{t('target')}</th>
                            <th scope="col">{t('outcome')}</th>
                        </tr>
                    </thead>
                    <tbody>
                        {page.items.map((ev) => (
                            <tr data-event={ev.event_id} data-action={ev.action}>
                                <td>{jst(ev.occurred_at)}</td>
                                <td>{who(ev)}</td>
                                <td class="mono">{ev.action}</td>
                                <td class="target">{what(ev)}</td>
                                <td>
                                    {t(OUTCOME[ev.outcome.result])}
                                    {ev.outcome.reason ? ` (${ev.outcome.reason})` : ''}
                                </td>
                            </tr>
                        ))}
                    </tbody>
                </table>
            )}
            <div class="pager">
                {cursor && (
                    <button type="button" onClick={() => setCursor(null)}>{t('first_page')}</button>
                )}
                {page?.next_cursor && (
                    <button type="button" onClick={() => setCursor(page.next_cursor)}>
                        {t('next_page')}
                    </button>
                )}
            </div>
        </section>
    );
}
