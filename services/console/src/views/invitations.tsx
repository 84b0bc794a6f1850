// views/invitations.tsx - create an invitation code to hand to a patient (large, readable,
// with its JST expiry), list the open ones and cancel them.

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { t } from '../i18n';
import { jst } from '../time';
import type { Invitation, Page } from '../types';
import { ConfirmButton, ErrorBox } from '../ui';

/** "K7M2QX9P" as "K7M2 QX9P" (two groups read aloud more easily). */
export function spaced(code: string): string {
    return `${code.slice(0, 4)} ${code.slice(4)}`;
}

export function Invitations({ orgId }: { orgId: string }) {
    const [list, setList] = useState<Invitation[]>([]);
    const [made, setMade] = useState<Invitation | null>(null);
    const [note, setNote] = useState('');
    const [error, setError] = useState<unknown>(null);
    const [tick, setTick] = useState(0);

    useEffect(() => {
        api<Page<Invitation>>('GET', `/orgs/${orgId}/invitations?limit=200`)
            .then((r) => setList(r.items))
            .catch(setError);
    }, [orgId, tick]);

    const create = async (e: Event) => {
        e.preventDefault();
        setError(null);
        try {
            const body = note.trim() ? { note: note.trim() } : undefined;
            setMade(await api<Invitation>('POST', `/orgs/${orgId}/invitations`, body));
            setNote('');
            setTick(tick + 1);
        } catch (err) {
            setError(err);
        }
    };

    const cancel = async (inv: Invitation) => {
        setError(null);
        try {
            await api('DELETE', `/orgs/${orgId}/invitations/${inv.id}`);
            if (made?.id === inv.id) {
                setMade(null);
            }
            setTick(tick + 1);
        } catch (err) {
            setError(err);
        }
    };

    return (
        <section aria-labelledby="inv-title">
            <h1 id="inv-title">{t('invitations')}</h1>
            <form class="filters" onSubmit={create}>
                <div class="field grow">
                    <label for="inv-note">{t('note')}</label>
                    <input id="inv-note" value={note} maxLength={200}
                        onInput={(e) => setNote((e.target as HTMLInputElement).value)} />
                </div>
                <button type="submit" class="primary">{t('new_invitation')}</button>
            </form>
            <ErrorBox error={error} />
            {made && (
                <div class="invitation-card" role="status">
                    <p>{t('invitation_lead')}</p>
                    <p class="code" data-code={made.code} aria-label={made.code.split('').join(' ')}>
                        {spaced(made.code)}
                    </p>
                    <p>{t('expires_at')}: <strong>{jst(made.expires_at)}</strong></p>
                </div>
            )}
            {list.length === 0 ? (
                <p>{t('no_invitations')}</p>
            ) : (
                <table class="invitations">
                    <thead>
                        <tr>
                            <th scope="col">{t('invitations')}</th>
                            <th scope="col">{t('note')}</th>
                            <th scope="col">{t('created_at')}</th>
                            <th scope="col">{t('expires_at')}</th>
                            <th scope="col"><span class="sr-only">{t('delete')}</span></th>
                        </tr>
                    </thead>
                    <tbody>
                        {list.map((inv) => (
                            <tr data-invitation={inv.code}>
                                <td class="mono">{spaced(inv.code)}</td>
                                <td>{inv.note ?? ''}</td>
                                <td>{jst(inv.created_at)}</td>
                                <td>{jst(inv.expires_at)}</td>
                                <td>
                                    <ConfirmButton label={t('cancel_code')} name={`${t('cancel_code')}: ${inv.code}`}
                                        action={() => cancel(inv)} />
                                </td>
                            </tr>
                        ))}
                    </tbody>
                </table>
            )}
        </section>
    );
}
