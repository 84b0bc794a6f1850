// views/review.tsx - admins only: the monthly access review (every staff account of the org
// with its role, last login, two-factor, role changes and flags of the month; the patients
// each one read, from the month's records.read audit events) and the attestations: a
// decision per line, recorded with POST .../access-review/{month}/attestations.

import { useEffect, useState } from 'preact/hooks';
import { api, withQuery } from '../api';
import { t, tOr } from '../i18n';
import { jst, jstMonthNow } from '../time';
import type { AccessReview, AuditEvent, Decision, Page } from '../types';
import { ErrorBox, Notice } from '../ui';
import { usePeople } from './audit';

const READ_PAGES = 5; /* at most 1,000 records.read events summarised */

function monthBounds(month: string): { from: string; to: string } {
    const [y, m] = month.split('-').map(Number);
    const next = m === 12 ? `${y + 1}-01` : `${y}-${String(m + 1).padStart(2, '0')}`;
    return { from: `${month}-01T00:00:00+09:00`, to: `${next}-01T00:00:00+09:00` };
}

/** Account id -> the patient ids it read during |month| (and whether the list was cut). */
async function readsOf(orgId: string, month: string): Promise<[Map<string, Set<string>>, boolean]> {
    const out = new Map<string, Set<string>>();
    let cursor: string | null = null;
    for (let i = 0; i < READ_PAGES; i++) {
        const q = { ...monthBounds(month), action: 'records.read', limit: 200, cursor };
        const r: Page<AuditEvent> = await api('GET', withQuery(`/orgs/${orgId}/audit-events`, q));
        for (const ev of r.items) {
            const who = ev.actor.account_id;
            const pid = ev.target.type === 'patient' ? ev.target.id : ev.target.patient_id;
            if (who && pid) {
                out.set(who, (out.get(who) ?? new Set()).add(pid));
            }
        }
        cursor = r.next_cursor;
        if (!cursor) {
            return [out, false];
        }
    }
    return [out, true];
}

const DECISIONS: Decision[] = ['keep', 'change', 'remove'];

export function Review({ orgId }: { orgId: string }) {
    const [month, setMonth] = useState(jstMonthNow());
    const [shown, setShown] = useState(month);
    const [cursor, setCursor] = useState<string | null>(null);
    const [review, setReview] = useState<AccessReview | null>(null);
    const [reads, setReads] = useState<[Map<string, Set<string>>, boolean] | null>(null);
    const [choice, setChoice] = useState<Record<string, { decision: Decision; comment: string }>>({});
    const [error, setError] = useState<unknown>(null);
    const [msg, setMsg] = useState('');
    const [tick, setTick] = useState(0);
    const people = usePeople(orgId, setError);

    useEffect(() => {
        setReview(null);
        setReads(null);
        api<AccessReview>('GET', withQuery(`/orgs/${orgId}/access-review`, { month: shown, cursor }))
            .then((r) => {
                setReview(r);
                const c: typeof choice = {};
                r.items.forEach((l) => {
                    c[l.account_id] = { decision: l.attestation?.decision ?? 'keep', comment: '' };
                });
                setChoice(c);
            })
            .catch(setError);
        readsOf(orgId, shown).then(setReads).catch(setError);
    }, [orgId, shown, cursor, tick]);

    const load = (e: Event) => {
        e.preventDefault();
        setError(null);
        setMsg('');
        setCursor(null);
        setShown(month);
        setTick(tick + 1);
    };

    const attest = async (e: Event) => {
        e.preventDefault();
        if (!review) {
            return;
        }
        setError(null);
        setMsg('');
        const items = review.items.map((l) => {
            const c = choice[l.account_id];
            const comment = c.comment.trim();
            return { account_id: l.account_id, decision: c.decision, ...(comment ? { comment } : {}) };
        });
        try {
            await api('POST', `/orgs/${orgId}/access-review/${review.month}/attestations`, { items });
            setMsg(t('attested'));
            setTick(tick + 1);
        } catch (err) {
            setError(err);
        }
    };

    const pick = (id: string, v: Partial<{ decision: Decision; comment: string }>) =>
        setChoice({ ...choice, [id]: { ...choice[id], ...v } });

    return (
        <section aria-labelledby="review-title">
            <h1 id="review-title">{t('nav_review')}</h1>
            <p>{t('review_lead')}</p>
            <form class="filters" onSubmit={load}>
                <div class="field">
                    <label for="review-month">{t('review_month')}</label>
                    <input id="review-month" type="month" value={month} required
                        onInput={(e) => setMonth((e.target as HTMLInputElement).value)} />
                </div>
                <button type="submit" class="primary">{t('show')}</button>
            </form>
            <ErrorBox error={error} />
            <Notice text={msg} />
            {review && (
                <form onSubmit={attest} aria-labelledby="review-table-title">
                    <h2 id="review-table-title">
                        {review.month}{' '}
                        {review.snapshot_at ? `(${t('snapshot_at')}: ${jst(review.snapshot_at)})`
                            : `(${t('review_live')})`}
                    </h2>
                    <table class="review">
                        <thead>
                            <tr>
                                <th scope="col">{t('name')}</th>
                                <th scope="col">{t('role')}</th>
                                <th scope="col">{t('last_login')}</th>
                                <th scope="col">{t('mfa')}</th>
                                <th scope="col">{t('flags')}</th>
                                <th scope="col">{t('patients_read')}</th>
                                <th scope="col">{t('attestation')}</th>
                                <th scope="col">{t('decision')}</th>
                            </tr>
                        </thead>
                        <tbody>
                            {review.items.map((l) => {
                                const read = [...(reads?.[0].get(l.account_id) ?? [])];
                                const c = choice[l.account_id];
                                return (
                                    <tr data-review={l.email}>
                                        <td>{l.name}<br /><span class="small">{l.email}</span></td>
                                        <td>
                                            {roleText(l.role)}
                                            {l.role_changes.map((rc) => (
                                                <div class="small">
                                                    {`${jst(rc.at)}: ${roleText(rc.from)} → ${roleText(rc.to)}`}
                                                </div>
                                            ))}
                                        </td>
                                        <td>{jst(l.last_login_at)}</td>
                                        <td>{l.mfa_enabled ? t('mfa_on') : t('mfa_off')}</td>
                                        <td>{l.flags.map((f) => <span class="tag">{flagText(f)}</span>)}</td>
                                        <td class="reads" data-count={read.length}>
                                            {reads === null ? t('loading') : `${read.length}`}
                                            {read.length > 0 &&
                                                `: ${read.map((id) => people.name(id) ?? id.slice(0, 8)).join(', ')}`}
                                        </td>
                                        <td class="attestation">
                                            {l.attestation ? (
                                                <>
                                                    {decisionText(l.attestation.decision)}
                                                    <div class="small">
                                                        {`${people.name(l.attestation.by) ?? ''} ${jst(l.attestation.at)}`}
                                                    </div>
                                                    {l.attestation.comment && (
                                                        <div class="small">{l.attestation.comment}</div>
                                                    )}
                                                </>
                                            ) : t('not_attested')}
                                        </td>
                                        <td>
                                            <label class="sr-only" for={`dec-${l.account_id}`}>
                                                {`${t('decision')}: ${l.name}`}
                                            </label>
                                            <select id={`dec-${l.account_id}`} value={c?.decision}
                                                onChange={(e) => pick(l.account_id, {
                                                    decision: (e.target as HTMLSelectElement).value as Decision,
                                                })}>
                                                {DECISIONS.map((d) => <option value={d}>{decisionText(d)}</option>)}
                                            </select>
                                            <label class="sr-only" for={`cmt-${l.account_id}`}>
                                                {`${t('comment')}: ${l.name}`}
                                            </label>
                                            <input id={`cmt-${l.account_id}`} value={c?.comment} maxLength={500}
                                                placeholder={t('comment')}
                                                onInput={(e) => pick(l.account_id, {
                                                    comment: (e.target as HTMLInputElement).value,
                                                })} />
                                        </td>
                                    </tr>
                                );
                            })}
                        </tbody>
                    </table>
                    {reads?.[1] && <p class="small">{t('reads_cut')}</p>}
                    <div class="pager">
                        <button type="submit" class="primary">{t('attest')}</button>
                        {cursor && (
                            <button type="button" onClick={() => setCursor(null)}>{t('first_page')}</button>
                        )}
                        {review.next_cursor && (
                            <button type="button" onClick={() => setCursor(review.next_cursor)}>
                                {t('next_page')}
                            </button>
                        )}
                    </div>
                </form>
            )}
        </section>
    );
}

function flagText(f: string): string {
    return tOr(`flag_${f}`, f);
}

function roleText(r: string | null): string {
    return r ? tOr(`role_${r}`, r) : '-';
}

function decisionText(d: Decision): string {
    return tOr(`decision_${d}`, d);
}
