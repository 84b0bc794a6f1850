// views/labels.tsx - patient groups and categories: create, rename, delete. (Patients are
// assigned on the patient page.)

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import { t } from '../i18n';
import type { Label, Page } from '../types';
import { ConfirmButton, ErrorBox, Field } from '../ui';

export function Labels({ orgId }: { orgId: string }) {
    return (
        <section aria-labelledby="labels-title">
            <h1 id="labels-title">{t('nav_labels')}</h1>
            <div class="two-col">
                <LabelList orgId={orgId} kind="groups" title={t('groups')} />
                <LabelList orgId={orgId} kind="categories" title={t('categories')} />
            </div>
        </section>
    );
}

function LabelList(p: { orgId: string; kind: 'groups' | 'categories'; title: string }) {
    const [items, setItems] = useState<Label[]>([]);
    const [name, setName] = useState('');
    const [editing, setEditing] = useState<string | null>(null);
    const [newName, setNewName] = useState('');
    const [error, setError] = useState<unknown>(null);
    const [tick, setTick] = useState(0);
    const base = `/orgs/${p.orgId}/${p.kind}`;

    useEffect(() => {
        api<Page<Label>>('GET', `${base}?limit=200`).then((r) => setItems(r.items)).catch(setError);
    }, [base, tick]);

    const run = async (f: () => Promise<unknown>) => {
        setError(null);
        try {
            await f();
            setTick(tick + 1);
            return true;
        } catch (err) {
            setError(err);
            return false;
        }
    };

    return (
        <section class="labels" aria-labelledby={`${p.kind}-title`}>
            <h2 id={`${p.kind}-title`}>{p.title}</h2>
            <form class="inline" onSubmit={async (e) => {
                e.preventDefault();
                if (await run(() => api('POST', base, { name: name.trim() }))) {
                    setName('');
                }
            }}>
                <Field id={`${p.kind}-name`} label={`${p.title}: ${t('name')}`} value={name}
                    onInput={setName} required />
                <button type="submit" class="primary">{t('create')}</button>
            </form>
            <ErrorBox error={error} />
            <table>
                <thead>
                    <tr>
                        <th scope="col">{t('name')}</th>
                        <th scope="col">{t('patients_count')}</th>
                        <th scope="col"><span class="sr-only">{t('rename')}</span></th>
                    </tr>
                </thead>
                <tbody>
                    {items.map((l) => (
                        <tr data-label={l.name}>
                            <td>
                                {editing === l.id ? (
                                    <form class="inline" onSubmit={async (e) => {
                                        e.preventDefault();
                                        if (await run(() => api('PATCH', `${base}/${l.id}`, { name: newName.trim() }))) {
                                            setEditing(null);
                                        }
                                    }}>
                                        <Field id={`rename-${l.id}`} label={t('new_name')} value={newName}
                                            onInput={setNewName} required />
                                        <button type="submit" class="primary">{t('save')}</button>
                                        <button type="button" onClick={() => setEditing(null)}>{t('cancel')}</button>
                                    </form>
                                ) : (
                                    l.name
                                )}
                            </td>
                            <td>{l.patient_count}</td>
                            <td class="actions">
                                <button type="button" aria-label={`${t('rename')}: ${l.name}`}
                                    onClick={() => { setEditing(l.id); setNewName(l.name); }}>
                                    {t('rename')}
                                </button>
                                <ConfirmButton label={t('delete')} name={`${t('delete')}: ${l.name}`}
                                    action={() => void run(() => api('DELETE', `${base}/${l.id}`))} />
                            </td>
                        </tr>
                    ))}
                </tbody>
            </table>
        </section>
    );
}
