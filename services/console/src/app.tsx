// app.tsx - the console shell: who is signed in, the forced steps, the idle watch, the
// navigation and the page for the current route.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, clearToken, getToken, onActivity, onExpired } from './api';
import { idleWatch, type IdleWatch } from './idle';
import { lang, setLang, t } from './i18n';
import { go, path } from './router';
import type { SessionInfo } from './types';
import { Link } from './ui';
import { Account } from './views/account';
import { Audit } from './views/audit';
import { Invitations } from './views/invitations';
import { Labels } from './views/labels';
import { PatientPage } from './views/patient';
import { Patients } from './views/patients';
import { Review } from './views/review';
import { ForcedChange, SignIn } from './views/signin';
import { Staff } from './views/staff';

export function App() {
    const [session, setSession] = useState<SessionInfo | null>(null);
    const [notice, setNotice] = useState('');
    const [warn, setWarn] = useState(false);
    const [loading, setLoading] = useState(getToken() !== null);
    const idle = useRef<IdleWatch | null>(null);

    const signOut = async (why: string) => {
        idle.current?.stop();
        idle.current = null;
        if (getToken()) {
            await api('POST', '/auth/logout').catch(() => undefined);
        }
        clearToken();
        setSession(null);
        setWarn(false);
        setNotice(why);
        go('/');
    };

    const load = async () => {
        try {
            const s = await api<SessionInfo>('GET', '/auth/session');
            if (s.kind !== 'staff' || !s.org_id) {
                await signOut(t('staff_only'));
                return;
            }
            if (!idle.current) {
                idle.current = idleWatch(setWarn, () => void signOut(t('idle_signed_out')));
            }
            idle.current.reset(s.idle_expires_at);
            setWarn(false);
            setNotice('');
            setSession(s);
        } catch {
            clearToken();
            setSession(null);
        } finally {
            setLoading(false);
        }
    };

    useEffect(() => {
        onActivity(() => idle.current?.touch());
        onExpired(() => void signOut(t('err_session_expired')));
        if (getToken()) {
            void load();
        }
        return () => idle.current?.stop();
    }, []);

    document.title = t('app_title');
    const langButton = (
        <button type="button" class="lang" onClick={() => setLang(lang.value === 'ja' ? 'en' : 'ja')}>
            {t('lang_switch')}
        </button>
    );

    if (loading) {
        return <p class="loading">{t('loading')}</p>;
    }
    if (!session) {
        return (
            <>
                <div class="topbar-min">{langButton}</div>
                <SignIn notice={notice} onSignedIn={() => void load()} />
            </>
        );
    }
    if (session.must_change_password) {
        return (
            <>
                <div class="topbar-min">{langButton}</div>
                <ForcedChange onDone={() => void load()} onSignOut={() => void signOut('')} />
            </>
        );
    }
    const admin = session.role === 'admin';
    const orgId = session.org_id as string;
    const enrolOnly = session.mfa_enrollment_required === true;
    const route = enrolOnly ? '/account' : path.value;
    const adminNav: [string, string][] = [
        ['/staff', t('nav_staff')],
        ['/audit', t('nav_audit')],
        ['/review', t('nav_review')],
    ];
    const nav: [string, string][] = [
        ['/', t('nav_patients')],
        ['/invitations', t('nav_invitations')],
        ['/labels', t('nav_labels')],
        ...(admin ? adminNav : []),
        ['/account', t('nav_account')],
    ];
    let page;
    const m = /^\/patients\/([0-9a-f-]{36})$/.exec(route);
    if (m) {
        page = <PatientPage orgId={orgId} patientId={m[1]} />;
    } else if (route === '/invitations') {
        page = <Invitations orgId={orgId} />;
    } else if (route === '/labels') {
        page = <Labels orgId={orgId} />;
    } else if (route === '/staff' && admin) {
        page = <Staff orgId={orgId} selfId={session.account.id} />;
    } else if (route === '/audit' && admin) {
        page = <Audit orgId={orgId} />;
    } else if (route === '/review' && admin) {
        page = <Review orgId={orgId} />;
    } else if (route === '/account') {
        page = <Account session={session} onChanged={() => void load()} />;
    } else {
        page = <Patients orgId={orgId} />;
    }
    return (
        <>
            <a class="skip" href="#main">{lang.value === 'ja' ? '本文へ移動' : 'Skip to content'}</a>
            <header class="topbar">
                <span class="brand">{t('app_title')}</span>
                <nav aria-label={t('app_title')}>
                    {!enrolOnly &&
                        nav.map(([to, label]) => (
                            <Link to={to} class={route === to ? 'active' : ''}>
                                {label}
                            </Link>
                        ))}
                </nav>
                <span class="who">
                    {session.account.name} ({session.role === 'admin' ? t('role_admin') : t('role_staff')})
                </span>
                {langButton}
                <button type="button" onClick={() => void signOut('')}>{t('sign_out')}</button>
            </header>
            {warn && (
                <div class="idle-warning" role="alertdialog" aria-live="assertive" aria-label={t('idle_warning')}>
                    <p>{t('idle_warning')}</p>
                    <button type="button" class="primary" onClick={() => void load()}>
                        {t('idle_continue')}
                    </button>
                </div>
            )}
            <main id="main" tabIndex={-1}>{page}</main>
        </>
    );
}
