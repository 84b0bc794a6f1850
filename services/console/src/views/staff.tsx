// views/staff.tsx - admins only: staff with role, status, last login, two-factor and the
// seats used / limit; add (the onboarding e-mail goes out), change role, unlock, reset
// two-factor, delete (confirmed). The API's errors (seat limit, last admin) in words.

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { t } from '../i18n';
import { jst } from '../time';
import type { Org, Page, Role, StaffMember } from '../types';
import { ConfirmButton, ErrorBox, Field, Notice } from '../ui';

export function Staff(p: { orgId: string; selfId: string }) {
    const [org, setOrg] = useState<Org | null>(null);
    const [items, setItems] = useState<StaffMember[]>([]);
    const [email, setEmail] = useState('');
    const [name, setName] = useState('');
    const [role, setRole] = useState<Role>('staff');
    const [error, setError] = useState<unknown>(null);
    const [msg, setMsg] = useState('');
    const [tick, setTick] = useState(0);
    const base = `/orgs/${p.orgId}/staff`;

    useEffect(() => {
        api<Org>('GET', `/orgs/${p.orgId}`).then(setOrg).catch(setError);
        api<Page<StaffMember>>('GET', `${base}?limit=200`).then((r) => setItems(r.items)).catch(setError);
    }, [p.orgId, tick]);

    const run = async (f: () => Promise<unknown>, done = '') => {
        setError(null);
        setMsg('');
        try {
            await f();
            setMsg(done);
            setTick(tick + 1);
            return true;
        } catch (err) {
            setError(err);
            return false;
        }
    };

    const add = async (e: Event) => {
        e.preventDefault();
        const body = { email: email.trim(), name: name.trim(), role };
        if (await run(() => api('POST', base, body), t('staff_added'))) {
            setEmail('');
            setName('');
        }
    };

    return (
        <section aria-labelledby="staff-title">
            <h1 id="staff-title">{t('staff')}</h1>
            {org && (
                <p class="seats" data-seats-used={org.seats_used} data-seat-limit={org.seat_limit}>
                    {t('seats')}: <strong>{org.seats_used} / {org.seat_limit}</strong>
                </p>
            )}
            <form class="filters" onSubmit={add} aria-label={t('add_staff')}>
                <Field id="staff-email" label={t('email')} type="email" value={email} onInput={setEmail} required />
                <Field id="staff-name" label={t('name')} value={name} onInput={setName} required />
                <div class="field">
                    <label for="staff-role">{t('role')}</label>
                    <select id="staff-role" value={role}
                        onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}>
                        <option value="staff">{t('role_staff')}</option>
                        <option value="admin">{t('role_admin')}</option>
                    </select>
                </div>
                <button type="submit" class="primary">{t('add_staff')}</button>
            </form>
            <ErrorBox error={error} />
            <Notice text={msg} />
            <table class="staff">
                <thead>
                    <tr>
                        <th scope="col">{t('name')}</th>
                        <th scope="col">{t('email')}</th>
                        <th scope="col">{t('role')}</th>
                        <th scope="col">{t('status')}</th>
                        <th scope="col">{t('last_login')}</th>
                        <th scope="col">{t('mfa')}</th>
                        <th scope="col"><span class="sr-only">{t('delete')}</span></th>
                    </tr>
                </thead>
                <tbody>
                    {items.map((s) => (
                        <StaffRow member={s} self={s.id === p.selfId}
                            run={run} path={`${base}/${s.id}`} />
                    ))}
                </tbody>
            </table>
        </section>
    );
}

function StaffRow(p: {
    member: StaffMember;
    self: boolean;
    path: string;
    run: (f: () => Promise<unknown>, done?: string) => Promise<boolean>;
}) {
    const s = p.member;
    const [role, setRole] = useState<Role>(s.role);
    const id = `role-${s.id}`;
    return (
        <tr data-staff={s.email}>
            <td>{s.name}</td>
            <td>{s.email}</td>
            <td>
                <form class="inline" onSubmit={(e) => {
                    e.preventDefault();
                    void p.run(() => api('PATCH', p.path, { role }), t('saved'));
                }}>
                    <label for={id} class="sr-only">{`${t('role')}: ${s.name}`}</label>
                    <select id={id} value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}>
                        <option value="staff">{t('role_staff')}</option>
                        <option value="admin">{t('role_admin')}</option>
                    </select>
                    <button type="submit" disabled={role === s.role}>{t('change_role')}</button>
                </form>
            </td>
            <td>
                {s.status === 'active' ? t('status_active') : t('status_pending')}
                {s.locked && <> · <strong>{t('locked')}</strong></>}
            </td>
            <td>{jst(s.last_login_at)}</td>
            <td>{s.mfa_methods.length > 0 ? `${t('mfa_on')} (${s.mfa_methods.join(', ')})` : t('mfa_off')}</td>
            <td class="actions">
                {s.locked && (
                    <button type="button" onClick={() => void p.run(() => api('POST', `${p.path}/unlock`), t('saved'))}>
                        {t('unlock')}
                    </button>
                )}
                {!p.self && (
                    <ConfirmButton label={t('reset_mfa')} name={`${t('reset_mfa')}: ${s.name}`}
                        action={() => void p.run(() => api('POST', `${p.path}/reset-mfa`), t('saved'))} />
                )}
                {!p.self && (
                    <ConfirmButton label={t('delete')} name={`${t('delete')}: ${s.name}`}
                        action={() => void p.run(() => api('DELETE', p.path), t('saved'))} />
                )}
            </td>
        </tr>
    );
}
