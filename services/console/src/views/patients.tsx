// views/patients.tsx - the org's linked patients: name search, group and category filters,
// latest values, paging by cursor.

import { useEffect, useState } from 'preact/hooks';
import { api, withQuery } from '../api';
import { valuesText } from '../format';
import { t, typeName } from '../i18n';
import { jst } from '../time';
import type { Label, Page, Patient } from '../types';
import { ErrorBox, Link } from '../ui';

const PAGE = 20;

/** Patients seen in lists, for the patient page's heading and memberships. */
export const patientCache = new Map<string, Patient>();

export function Patients({ orgId }: { orgId: string }) {
    const [q, setQ] = useState('');
    const [group, setGroup] = useState('');
    const [category, setCategory] = useState('');
    const [groups, setGroups] = useState<Label[]>([]);
    const [categories, setCategories] = useState<Label[]>([]);
    const [cursor, setCursor] = useState<string | null>(null);
    const [page, setPage] = useState<Page<Patient> | null>(null);
    const [error, setError] = useState<unknown>(null);
    const [applied, setApplied] = useState({ q: '', group: '', category: '' });

    useEffect(() => {
        api<Page<Label>>('GET', `/orgs/${orgId}/groups?limit=200`)
            .then((r) => setGroups(r.items))
            .catch(setError);
        api<Page<Label>>('GET', `/orgs/${orgId}/categories?limit=200`)
            .then((r) => setCategories(r.items))
            .catch(setError);
    }, [orgId]);

    useEffect(() => {
        setError(null);
        api<Page<Patient>>(
            'GET',
            withQuery(`/orgs/${orgId}/patients`, { ...applied, limit: PAGE, cursor }),
        )
            .then((r) => {
                r.items.forEach((p) => patientCache.set(p.patient_id, p));
                setPage(r);
            })
            .catch(setError);
    }, [orgId, applied, cursor]);

    const submit = (e: Event) => {
        e.preventDefault();
        setCursor(null);
        setApplied({ q: q.trim(), group, category });
    };

    return (
        <section aria-labelledby="patients-title">
            <h1 id="patients-title">{t('nav_patients')}</h1>
            <form class="filters" role="search" onSubmit={submit}>
                <div class="field">
                    <label for="q">{t('search_name')}</label>
                    <input id="q" type="search" value={q} maxLength={100}
                        onInput={(e) => setQ((e.target as HTMLInputElement).value)} />
                </div>
                <div class="field">
                    <label for="filter-group">{t('group')}</label>
                    <select id="filter-group" value={group}
                        onChange={(e) => setGroup((e.target as HTMLSelectElement).value)}>
                        <option value="">{t('all')}</option>
                        {groups.map((g) => <option value={g.id}>{g.name}</option>)}
                    </select>
                </div>
                <div class="field">
                    <label for="filter-category">{t('category')}</label>
                    <select id="filter-category" value={category}
                        onChange={(e) => setCategory((e.target as HTMLSelectElement).value)}>
                        <option value="">{t('all')}</option>
                        {categories.map((c) => <option value={c.id}>{c.name}</option>)}
                    </select>
                </div>
                <button type="submit" class="primary">{t('search')}</button>
            </form>
            <ErrorBox error={error} />
            {page && page.items.length === 0 && <p>{t('no_patients')}</p>}
            {page && page.items.length > 0 && (
                <table class="patients">
                    <thead>
                        <tr>
                            <th scope="col">{t('name')}</th>
                            <th scope="col">{t('groups')} / {t('categories')}</th>
                            <th scope="col">{t('latest')}</th>
                            <th scope="col">{t('linked_at')}</th>
                        </tr>
                    </thead>
                    <tbody>
                        {page.items.map((p) => (
                            <tr data-patient={p.patient_id}>
                                <td><Link to={`/patients/${p.patient_id}`}>{p.name}</Link></td>
                                <td>
                                    {[...p.groups, ...p.categories].map((l) => (
                                        <span class="tag">{l.name}</span>
                                    ))}
                                </td>
                                <td>
                                    {Object.entries(p.latest).map(([type, l]) => (
                                        <div class="latest">
                                            {typeName(type)}
                                            {': '}
                                            {valuesText(type, l.values)}
                                        </div>
                                    ))}
                                </td>
                                <td>{jst(p.linked_at)}</td>
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
