// views/signin.tsx - sign-in (password, then the second factor when enrolled), "forgot
// password" and the forced first password change.

import { useState } from 'preact/hooks';
import { api, setToken } from '../api';
import { t } from '../i18n';
import type { MfaChallenge, SessionIssued } from '../types';
import { ErrorBox, Field, Notice } from '../ui';

export function SignIn(p: { onSignedIn: () => void; notice: string }) {
    const [email, setEmail] = useState('');
    const [password, setPassword] = useState('');
    const [mfa, setMfa] = useState<MfaChallenge | null>(null);
    const [code, setCode] = useState('');
    const [recovery, setRecovery] = useState(false);
    const [forgot, setForgot] = useState(false);
    const [error, setError] = useState<unknown>(null);
    const [busy, setBusy] = useState(false);

    const issued = (s: SessionIssued) => {
        setToken(s.token);
        setPassword('');
        p.onSignedIn();
    };

    const submit = async (e: Event) => {
        e.preventDefault();
        setBusy(true);
        setError(null);
        try {
            if (mfa) {
                const body = recovery
                    ? { mfa_token: mfa.mfa_token, recovery_code: code.trim() }
                    : { mfa_token: mfa.mfa_token, code: code.trim() };
                issued(await api<SessionIssued>('POST', '/auth/login/mfa', body));
                return;
            }
            const r = await api<SessionIssued | MfaChallenge>('POST', '/auth/login', {
                email,
                password,
            });
            if ('mfa_required' in r) {
                setMfa(r);
                setCode('');
            } else {
                issued(r);
            }
        } catch (err) {
            setError(err);
        } finally {
            setBusy(false);
        }
    };

    if (forgot) {
        return <Forgot email={email} onBack={() => setForgot(false)} />;
    }
    return (
        <main class="signin" aria-labelledby="signin-title">
            <h1 id="signin-title">{t('app_title')}</h1>
            <Notice text={p.notice} />
            <form onSubmit={submit} aria-busy={busy}>
                {!mfa && (
                    <>
                        <Field id="email" label={t('email')} type="email" value={email}
                            onInput={setEmail} required autocomplete="username" />
                        <Field id="password" label={t('password')} type="password"
                            value={password} onInput={setPassword} required
                            autocomplete="current-password" />
                    </>
                )}
                {mfa && (
                    <>
                        <Field id="mfa-code" label={recovery ? t('recovery_code') : t('totp_code')}
                            value={code} onInput={setCode} required autocomplete="one-time-code"
                            inputMode={recovery ? 'text' : 'numeric'} />
                        <label class="check">
                            <input type="checkbox" checked={recovery}
                                onChange={(e) => setRecovery((e.target as HTMLInputElement).checked)} />
                            {t('use_recovery')}
                        </label>
                    </>
                )}
                <ErrorBox error={error} />
                <button type="submit" class="primary" disabled={busy}>
                    {mfa ? t('verify') : t('sign_in')}
                </button>
            </form>
            {!mfa && (
                <button type="button" class="linkish" onClick={() => setForgot(true)}>
                    {t('forgot')}
                </button>
            )}
        </main>
    );
}

function Forgot(p: { email: string; onBack: () => void }) {
    const [email, setEmail] = useState(p.email);
    const [sent, setSent] = useState(false);
    const [error, setError] = useState<unknown>(null);

    const submit = async (e: Event) => {
        e.preventDefault();
        setError(null);
        try {
            await api('POST', '/auth/password-reset/request', { email });
            setSent(true);
        } catch (err) {
            setError(err);
        }
    };
    return (
        <main class="signin" aria-labelledby="forgot-title">
            <h1 id="forgot-title">{t('forgot_title')}</h1>
            {sent ? (
                <Notice text={t('forgot_sent')} />
            ) : (
                <form onSubmit={submit}>
                    <Field id="forgot-email" label={t('email')} type="email" value={email}
                        onInput={setEmail} required autocomplete="username" />
                    <ErrorBox error={error} />
                    <button type="submit" class="primary">{t('forgot_send')}</button>
                </form>
            )}
            <button type="button" class="linkish" onClick={p.onBack}>
                {t('back_to_sign_in')}
            </button>
        </main>
    );
}

/** The password form, used for the forced first change and on the account page. */
export function PasswordForm(p: { onDone: () => void; idPrefix: string }) {
    const [current, setCurrent] = useState('');
    const [next, setNext] = useState('');
    const [again, setAgain] = useState('');
    const [error, setError] = useState<unknown>(null);
    const [msg, setMsg] = useState('');

    const submit = async (e: Event) => {
        e.preventDefault();
        setError(null);
        setMsg('');
        if (next !== again) {
            setMsg(t('passwords_differ'));
            return;
        }
        try {
            await api('POST', '/auth/password', { current_password: current, new_password: next });
            setCurrent('');
            setNext('');
            setAgain('');
            setMsg(t('password_changed'));
            p.onDone();
        } catch (err) {
            setError(err);
        }
    };
    const id = p.idPrefix;
    return (
        <form onSubmit={submit}>
            <Field id={`${id}-current`} label={t('current_password')} type="password"
                value={current} onInput={setCurrent} required autocomplete="current-password" />
            <Field id={`${id}-new`} label={t('new_password')} type="password" value={next}
                onInput={setNext} required autocomplete="new-password" />
            <Field id={`${id}-again`} label={t('new_password_again')} type="password"
                value={again} onInput={setAgain} required autocomplete="new-password" />
            <ErrorBox error={error} />
            <Notice text={msg} />
            <button type="submit" class="primary">{t('change_password')}</button>
        </form>
    );
}

export function ForcedChange(p: { onDone: () => void; onSignOut: () => void }) {
    return (
        <main class="signin" aria-labelledby="change-title">
            <h1 id="change-title">{t('must_change_title')}</h1>
            <p>{t('must_change_lead')}</p>
            <PasswordForm idPrefix="first" onDone={p.onDone} />
            <button type="button" class="linkish" onClick={p.onSignOut}>{t('sign_out')}</button>
        </main>
    );
}
