// views/account.tsx - my account: change password, TOTP enrolment (QR code of the otpauth
// URI drawn locally), the recovery codes shown once, my sessions and revoking them.

import { useEffect, useState } from 'preact/hooks';
import { renderSVG } from 'uqr';
import { api } from '../api';
import { t } from '../i18n';
import { jst } from '../time';
import type { Page, SessionInfo, SessionSummary } from '../types';
import { ErrorBox, Field } from '../ui';
import { PasswordForm } from './signin';

export function Account(p: { session: SessionInfo; onChanged: () => void }) {
    const enrolOnly = p.session.mfa_enrollment_required === true;
    return (
        <section aria-labelledby="account-title">
            <h1 id="account-title">{t('account')}</h1>
            <div class="two-col">
                <div>
                    <h2>{t('totp_title')}</h2>
                    <Totp enrolled={p.session.mfa_methods.includes('totp')} onChanged={p.onChanged} />
                </div>
                <div>
                    <h2>{t('change_password')}</h2>
                    <PasswordForm idPrefix="acct" onDone={() => undefined} />
                </div>
            </div>
            {!enrolOnly && <Sessions />}
        </section>
    );
}

function Totp(p: { enrolled: boolean; onChanged: () => void }) {
    const [enrol, setEnrol] = useState<{ secret: string; otpauth_uri: string } | null>(null);
    const [code, setCode] = useState('');
    const [codes, setCodes] = useState<string[] | null>(null);
    const [error, setError] = useState<unknown>(null);

    if (codes) {
        return (
            <div class="recovery" role="status">
                <h3>{t('recovery_title')}</h3>
                <p>{t('recovery_once')}</p>
                <ol class="mono">{codes.map((c) => <li>{c}</li>)}</ol>
                <button type="button" class="primary" onClick={() => { setCodes(null); p.onChanged(); }}>
                    {t('close')}
                </button>
            </div>
        );
    }
    if (p.enrolled) {
        return <p>{t('totp_enabled')}</p>;
    }
    if (!enrol) {
        return (
            <>
                <ErrorBox error={error} />
                <button type="button" class="primary" onClick={async () => {
                    setError(null);
                    try {
                        setEnrol(await api('POST', '/auth/mfa/totp/enroll'));
                    } catch (err) {
                        setError(err);
                    }
                }}>{t('totp_start')}</button>
            </>
        );
    }
    const svg = renderSVG(enrol.otpauth_uri, { border: 2 });
    return (
        <form onSubmit={async (e) => {
            e.preventDefault();
            setError(null);
            try {
                const r = await api<{ recovery_codes: string[] }>('POST', '/auth/mfa/totp/confirm', { code: code.trim() });
                setEnrol(null);
                setCode('');
                setCodes(r.recovery_codes);
            } catch (err) {
                setError(err);
            }
        }}>
            <p>{t('totp_scan')}</p>
            <img class="qr" alt={t('totp_title')} width={200} height={200}
                src={`data:image/svg+xml;base64,${btoa(svg)}`} />
            <p>{t('totp_secret')}: <code class="secret">{enrol.secret}</code></p>
            <Field id="totp-code" label={t('totp_code')} value={code} onInput={setCode} required
                inputMode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" />
            <ErrorBox error={error} />
            <button type="submit" class="primary">{t('verify')}</button>
        </form>
    );
}

function Sessions() {
    const [items, setItems] = useState<SessionSummary[]>([]);
    const [error, setError] = useState<unknown>(null);
    const [tick, setTick] = useState(0);

    useEffect(() => {
        api<Page<SessionSummary>>('GET', '/auth/sessions?limit=50').then((r) => setItems(r.items)).catch(setError);
    }, [tick]);

    return (
        <section aria-labelledby="sessions-title">
            <h2 id="sessions-title">{t('sessions')}</h2>
            <ErrorBox error={error} />
            <table class="sessions">
                <thead>
                    <tr>
                        <th scope="col">{t('created_at')}</th>
                        <th scope="col">{t('last_active_until')}</th>
                        <th scope="col">IP / UA</th>
                        <th scope="col"><span class="sr-only">{t('revoke')}</span></th>
                    </tr>
                </thead>
                <tbody>
                    {items.map((s) => (
                        <tr data-session={s.id}>
                            <td>{jst(s.created_at)}</td>
                            <td>{jst(s.idle_expires_at)}</td>
                            <td>{s.ip ?? ''} {s.user_agent ?? ''}</td>
                            <td>
                                {s.current ? (
                                    <strong>{t('this_session')}</strong>
                                ) : (
                                    <button type="button" onClick={async () => {
                                        setError(null);
                                        try {
                                            await api('DELETE', `/auth/sessions/${s.id}`);
                                            setTick(tick + 1);
                                        } catch (err) {
                                            setError(err);
                                        }
                                    }}>{t('revoke')}</button>
                                )}
                            </td>
                        </tr>
                    ))}
                </tbody>
            </table>
        </section>
    );
}
