// views/patient.tsx - one linked patient: blood pressure chart over a chosen period (summary
// API), the raw records, group and category membership, and the clinic record form.

import { useEffect, useState } from 'preact/hooks';
import { api, withQuery } from '../api';
import { BpChart } from '../chart';
import { valuesText } from '../format';
import { t, typeName } from '../i18n';
import { jst } from '../time';
import type { Label, LabelRef, Page, Patient, RecordItem, Summary } from '../types';
import { ErrorBox } from '../ui';
import { patientCache } from './patients';
import { RecordForm } from './record_form';

const PERIODS = [
    [7, 'days_7'],
    [30, 'days_30'],
    [90, 'days_90'],
    [365, 'days_365'],
] as const;

export function PatientPage(p: { orgId: string; patientId: string }) {
    const [patient, setPatient] = useState<Patient | null>(patientCache.get(p.patientId) ?? null);
    const [days, setDays] = useState(30);
    const [bucket, setBucket] = useState('day');
    const [summary, setSummary] = useState<Summary | null>(null);
    const [records, setRecords] = useState<Page<RecordItem> | null>(null);
    const [cursor, setCursor] = useState<string | null>(null);
    const [error, setError] = useState<unknown>(null);
    const [tick, setTick] = useState(0);
    const base = `/orgs/${p.orgId}/patients/${p.patientId}`;

    useEffect(() => {
        if (patient) {
            return;
        }
        api<Page<Patient>>('GET', `/orgs/${p.orgId}/patients?limit=200`)
            .then((r) => {
                r.items.forEach((x) => patientCache.set(x.patient_id, x));
                setPatient(patientCache.get(p.patientId) ?? null);
            })
            .catch(setError);
    }, [p.patientId]);

    useEffect(() => {
        const from = new Date(Date.now() - days * 86400e3).toISOString();
        api<Summary>('GET', withQuery(`${base}/records/summary`, { type: 'blood_pressure', from, bucket }))
            .then(setSummary)
            .catch(setError);
    }, [base, days, bucket, tick]);

    useEffect(() => {
        api<Page<RecordItem>>('GET', withQuery(`${base}/records`, { limit: 20, cursor }))
            .then(setRecords)
            .catch(setError);
    }, [base, cursor, tick]);

    return (
        <section aria-labelledby="patient-title">
            <h1 id="patient-title">{patient ? patient.name : t('patient')}</h1>
            <ErrorBox error={error} />
            {patient && (
                <Memberships orgId={p.orgId} patient={patient} onChange={(x) => {
                    patientCache.set(x.patient_id, x);
                    setPatient(x);
                }} />
            )}
            <h2>{t('bp_chart')}</h2>
            <div class="filters">
                <div class="field">
                    <label for="period">{t('period')}</label>
                    <select id="period" value={days}
                        onChange={(e) => setDays(Number((e.target as HTMLSelectElement).value))}>
                        {PERIODS.map(([d, k]) => <option value={d}>{t(k)}</option>)}
                    </select>
                </div>
                <div class="field">
                    <label for="bucket">{t('bucket')}</label>
                    <select id="bucket" value={bucket}
                        onChange={(e) => setBucket((e.target as HTMLSelectElement).value)}>
                        <option value="day">{t('bucket_day')}</option>
                        <option value="week">{t('bucket_week')}</option>
                        <option value="month">{t('bucket_month')}</option>
                    </select>
                </div>
            </div>
            {summary ? <BpChart summary={summary} /> : <p>{t('loading')}</p>}
            <h2>{t('records')}</h2>
            {records && (
                <table class="records">
                    <thead>
                        <tr>
                            <th scope="col">{t('measured_at')}</th>
                            <th scope="col">{t('type')}</th>
                            <th scope="col">{t('values')}</th>
                            <th scope="col">{t('source')}</th>
                            <th scope="col">{t('note')}</th>
                        </tr>
                    </thead>
                    <tbody>
                        {records.items.map((r) => (
                            <tr data-record={r.id}>
                                <td>{jst(r.measured_at)}</td>
                                <td>{typeName(r.type)}</td>
                                <td>{valuesText(r.type, r.values)}</td>
                                <td>{r.source}</td>
                                <td>{r.note ?? ''}</td>
                            </tr>
                        ))}
                    </tbody>
                </table>
            )}
            <div class="pager">
                {cursor && <button type="button" onClick={() => setCursor(null)}>{t('first_page')}</button>}
                {records?.next_cursor && (
                    <button type="button" onClick={() => setCursor(records.next_cursor)}>{t('next_page')}</button>
                )}
            </div>
            <RecordForm orgId={p.orgId} patientId={p.patientId} onSaved={() => {
                setCursor(null);
                setTick(tick + 1);
            }} />
        </section>
    );
}

function Memberships(p: { orgId: string; patient: Patient; onChange: (x: Patient) => void }) {
    const [groups, setGroups] = useState<Label[]>([]);
    const [categories, setCategories] = useState<Label[]>([]);
    const [error, setError] = useState<unknown>(null);

    useEffect(() => {
        api<Page<Label>>('GET', `/orgs/${p.orgId}/groups?limit=200`).then((r) => setGroups(r.items)).catch(setError);
        api<Page<Label>>('GET', `/orgs/${p.orgId}/categories?limit=200`).then((r) => setCategories(r.items)).catch(setError);
    }, [p.orgId]);

    const change = async (kind: 'groups' | 'categories', l: LabelRef, add: boolean) => {
        setError(null);
        try {
            await api(add ? 'PUT' : 'DELETE', `/orgs/${p.orgId}/${kind}/${l.id}/patients/${p.patient.patient_id}`);
            const cur = p.patient[kind].filter((x) => x.id !== l.id);
            p.onChange({ ...p.patient, [kind]: add ? [...cur, { id: l.id, name: l.name }] : cur });
        } catch (err) {
            setError(err);
        }
    };

    const block = (kind: 'groups' | 'categories', all: Label[], title: string) => {
        const mine = p.patient[kind];
        const free = all.filter((l) => !mine.some((m) => m.id === l.id));
        const id = `add-${kind}`;
        return (
            <div class="membership">
                <h3>{title}</h3>
                <ul>
                    {mine.map((l) => (
                        <li>
                            <span class="tag">{l.name}</span>
                            <button type="button" aria-label={`${t('remove')}: ${l.name}`}
                                onClick={() => void change(kind, l, false)}>{t('remove')}</button>
                        </li>
                    ))}
                </ul>
                {free.length > 0 && (
                    <form onSubmit={(e) => {
                        e.preventDefault();
                        const sel = (e.currentTarget as HTMLFormElement).elements.namedItem(id) as HTMLSelectElement;
                        const l = free.find((x) => x.id === sel.value);
                        if (l) {
                            void change(kind, l, true);
                        }
                    }}>
                        <label for={id}>{title}</label>
                        <select id={id} name={id}>
                            {free.map((l) => <option value={l.id}>{l.name}</option>)}
                        </select>
                        <button type="submit">{t('assign')}</button>
                    </form>
                )}
            </div>
        );
    };

    return (
        <div class="memberships" aria-label={t('membership')}>
            {block('groups', groups, t('groups'))}
            {block('categories', categories, t('categories'))}
            <ErrorBox error={error} />
        </div>
    );
}
