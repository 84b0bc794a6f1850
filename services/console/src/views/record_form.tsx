// views/record_form.tsx - add a clinic record for a linked patient; fields follow the
// record-type catalogue (GET /api/v1/records/types), errors are shown at their field.

import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from '../api';
import { t, typeName } from '../i18n';
import { fromJstInput, jstInput } from '../time';
import type { Values } from '../types';
import { ErrorBox, Field, Notice } from '../ui';

interface TypeField {
    name: string;
    unit: string | null;
    min: number | null;
    max: number | null;
    required: boolean;
    enum?: string[];
}

interface TypeInfo {
    type: string;
    fields: TypeField[];
}

let catalogue: Promise<TypeInfo[]> | null = null;

export function RecordForm(p: { orgId: string; patientId: string; onSaved: () => void }) {
    const [types, setTypes] = useState<TypeInfo[]>([]);
    const [type, setType] = useState('hba1c');
    const [vals, setVals] = useState<Record<string, string>>({});
    const [when, setWhen] = useState(jstInput(new Date()));
    const [note, setNote] = useState('');
    const [error, setError] = useState<unknown>(null);
    const [msg, setMsg] = useState('');

    useEffect(() => {
        catalogue ??= api<{ items: TypeInfo[] }>('GET', '/records/types').then((r) => r.items);
        catalogue.then(setTypes).catch((e) => {
            catalogue = null;
            setError(e);
        });
    }, []);

    const info = types.find((x) => x.type === type);
    const fieldErr = (name: string) =>
        error instanceof ApiError ? error.errors.find((f) => f.field === `values.${name}`) : undefined;

    const submit = async (e: Event) => {
        e.preventDefault();
        if (!info) {
            return;
        }
        setError(null);
        setMsg('');
        const values: Values = {};
        for (const f of info.fields) {
            const v = (vals[f.name] ?? '').trim();
            if (v === '') {
                continue;
            }
            values[f.name] = f.unit !== null || f.min !== null ? Number(v) : v === 'true' ? true : v === 'false' ? false : v;
        }
        try {
            await api('POST', `/orgs/${p.orgId}/patients/${p.patientId}/records`, {
                type,
                measured_at: fromJstInput(when),
                values,
                ...(note.trim() ? { note: note.trim() } : {}),
            });
            setVals({});
            setNote('');
            setMsg(t('saved'));
            p.onSaved();
        } catch (err) {
            setError(err);
        }
    };

    return (
        <form class="record-form" onSubmit={submit} aria-labelledby="add-record-title">
            <h2 id="add-record-title">{t('add_record')}</h2>
            <div class="row">
                <div class="field">
                    <label for="rec-type">{t('type')}</label>
                    <select id="rec-type" value={type}
                        onChange={(e) => { setType((e.target as HTMLSelectElement).value); setVals({}); }}>
                        {types.map((x) => <option value={x.type}>{typeName(x.type)}</option>)}
                    </select>
                </div>
                <Field id="rec-when" label={`${t('measured_at')} (JST)`} type="datetime-local"
                    value={when} onInput={setWhen} required />
            </div>
            <div class="row">
                {info?.fields.map((f) => {
                    const id = `rec-${f.name}`;
                    const label = `${f.name === 'value' ? t('value') : f.name}${f.unit ? ` (${f.unit})` : ''}`;
                    const fe = fieldErr(f.name);
                    if (f.enum) {
                        return (
                            <div class="field">
                                <label for={id}>{label}</label>
                                <select id={id} value={vals[f.name] ?? ''} required={f.required}
                                    onChange={(e) => setVals({ ...vals, [f.name]: (e.target as HTMLSelectElement).value })}>
                                    <option value="" />
                                    {f.enum.map((o) => <option value={o}>{o}</option>)}
                                </select>
                            </div>
                        );
                    }
                    return (
                        <div class="field">
                            <label for={id}>{label}</label>
                            <input id={id} value={vals[f.name] ?? ''} required={f.required}
                                type={f.unit !== null || f.min !== null ? 'number' : 'text'}
                                step="any" min={f.min ?? undefined} max={f.max ?? undefined}
                                aria-invalid={fe ? 'true' : undefined}
                                aria-describedby={fe ? `${id}-err` : undefined}
                                onInput={(e) => setVals({ ...vals, [f.name]: (e.target as HTMLInputElement).value })} />
                            {fe && <span id={`${id}-err`} class="field-error">{fe.message}</span>}
                        </div>
                    );
                })}
                <div class="field grow">
                    <label for="rec-note">{t('note')}</label>
                    <input id="rec-note" value={note} maxLength={1000}
                        onInput={(e) => setNote((e.target as HTMLInputElement).value)} />
                </div>
            </div>
            <ErrorBox error={error} />
            <Notice text={msg} />
            <button type="submit" class="primary">{t('save')}</button>
        </form>
    );
}
